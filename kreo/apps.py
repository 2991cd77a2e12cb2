from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django_otp.plugins.otp_static.apps import DefaultConfig as OtpStaticConfig
from django_otp.plugins.otp_totp.apps import DefaultConfig as OtpTotpConfig


class KreoConfig(AppConfig):
    # Several configs live in this module; this one is what "kreo" means.
    default = True
    name = "kreo"
    verbose_name = "Kreo platform"

    def ready(self) -> None:
        from kreo import checks  # noqa: F401 - registers the cache and key checks

        post_migrate.connect(_seed_schedule, sender=self)


def _seed_schedule(sender, **kwargs) -> None:
    from kreo.schedule import sync_default_schedule

    sync_default_schedule()


# Third-party apps under names a new staff member recognises in the admin
# (labels unchanged, so tables and permissions stay where they are).


class TokensConfig(AppConfig):
    name = "knox"
    label = "knox"
    verbose_name = "API tokens"


class TotpConfig(OtpTotpConfig):
    verbose_name = "Two-factor: authenticator apps"


class RecoveryCodesConfig(OtpStaticConfig):
    verbose_name = "Two-factor: recovery codes"
