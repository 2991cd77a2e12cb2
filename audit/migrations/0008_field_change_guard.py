"""django-auditlog's entries made append-only on PostgreSQL, as the trail is
(audit/sql.py ``FIELD_CHANGE_GUARD``; audit/fieldchanges.py mirrors each
entry into the chain)."""

from django.db import migrations

from audit.sql import field_change_install_sql, field_change_uninstall_sql


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in field_change_install_sql():
            schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in field_change_uninstall_sql():
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0007_review_own_events_reason"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
