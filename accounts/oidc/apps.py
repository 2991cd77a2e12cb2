from django.apps import AppConfig


class OidcConfig(AppConfig):
    name = "accounts.oidc"
    label = "accounts_oidc"
    verbose_name = "Single sign-on"
    default_auto_field = "django.db.models.BigAutoField"
