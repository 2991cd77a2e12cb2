from django.apps import AppConfig
from django.db.models.signals import post_migrate

from kreo.permissions import AUDITOR_GROUP

AUDITOR_PERMISSIONS = (
    "view_auditevent",
    "export_auditevent",
    "view_auditseal",
    "view_auditarchive",
    "view_auditreview",
    "change_auditreview",
)


def ensure_auditor_group(sender, using="default", **kwargs):
    """The Auditor group exists with exactly the audit permissions it needs."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.using(using).get_or_create(name=AUDITOR_GROUP)
    perms = Permission.objects.using(using).filter(
        content_type__app_label="audit", codename__in=AUDITOR_PERMISSIONS
    )
    group.permissions.add(*perms)


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from audit import fieldchanges

        post_migrate.connect(ensure_auditor_group, sender=self)
        fieldchanges.connect()
        from audit.admin import unregister_log_entries

        unregister_log_entries()
