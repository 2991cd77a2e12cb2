from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default = True


class KreoAdminConfig(admin_apps.AdminConfig):
    """The admin on a site that signs in through the accounts login and OTP."""

    default = False
    default_site = "accounts.admin_site.KreoAdminSite"
