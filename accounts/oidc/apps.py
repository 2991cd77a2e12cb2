from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_admin_group(sender, using="default", **kwargs):
    """The Admin group exists with the permissions projects.permissions lists.

    Runs after every app's migrations (their permissions appear one app at a
    time); adding is idempotent.
    """
    from django.contrib.auth.models import Group, Permission

    from projects.permissions import ADMIN_GROUP, ADMIN_GROUP_PERMISSIONS

    group, _ = Group.objects.using(using).get_or_create(name=ADMIN_GROUP)
    wanted = []
    for app_label, actions in ADMIN_GROUP_PERMISSIONS.items():
        perms = Permission.objects.using(using).filter(
            content_type__app_label=app_label
        )
        if actions != "*":
            perms = [p for p in perms if p.codename.split("_", 1)[0] in actions]
        wanted.extend(perms)
    group.permissions.add(*wanted)


class OidcConfig(AppConfig):
    name = "accounts.oidc"
    label = "accounts_oidc"
    verbose_name = "Single sign-on"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_migrate.connect(ensure_admin_group)
