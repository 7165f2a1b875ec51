from django.apps import AppConfig


class FixConfig(AppConfig):
    name = "fix"
    verbose_name = "FIX gateway"
