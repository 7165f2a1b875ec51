from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self):
        # Connects the signal that forgets a changed user's cached copy (API tokens).
        from . import authentication  # noqa: F401


class AdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with the site of accounts.admin_site."""

    default = False  # not the accounts app's own config
    default_site = "accounts.admin_site.AdminSite"
