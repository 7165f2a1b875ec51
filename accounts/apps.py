from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        # Connects the signal that forgets a changed user's cached copy (API tokens).
        from . import authentication  # noqa: F401
