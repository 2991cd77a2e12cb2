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


def apply_role_grants(sender, using="default", **kwargs):
    """After ``migrate`` (run as the owner): the application role and the
    purge role get exactly the rights of audit/sql.py, when they are named."""
    from django.conf import settings
    from django.db import connections

    from audit.sql import grants_sql, purge_grants_sql

    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    statements = []
    if settings.KREO_DB_APP_ROLE:
        statements += grants_sql(settings.KREO_DB_APP_ROLE)
    if settings.KREO_DB_PURGE_ROLE:
        statements += purge_grants_sql(settings.KREO_DB_PURGE_ROLE)
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit trail"

    def ready(self):
        from audit import buffer, fieldchanges

        post_migrate.connect(ensure_auditor_group, sender=self)
        post_migrate.connect(apply_role_grants, sender=self)
        fieldchanges.connect()
        buffer.connect()
        from audit.admin import unregister_log_entries

        unregister_log_entries()
