from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default = True

    def ready(self) -> None:
        # Deleted accounts stay deleted through a restore: the restore path
        # (projects.keys.after_restore) applies their tombstones through us.
        from accounts import deletion
        from projects import keys

        keys.erasure_kind_register(
            deletion.KIND,
            keys.ErasureKind(exists=deletion.exists, reapply=deletion.reapply),
        )


class KreoAdminConfig(admin_apps.AdminConfig):
    """The admin on a site that signs in through the accounts login and OTP."""

    default = False
    default_site = "accounts.admin_site.KreoAdminSite"
