"""Backfill content hashes of rows recorded before hashing, then install the
PostgreSQL append-only triggers (audit/sql.py)."""

from django.db import migrations

from audit import chain
from audit.sql import install_sql, uninstall_sql


def backfill(apps, schema_editor):
    event_model = apps.get_model("audit", "AuditEvent")
    for event in event_model.objects.filter(content_hash="").iterator():
        event.details = chain.normalise_details(event.details)
        event.content_hash = chain.content_hash(chain.event_values(event))
        event.save(update_fields=["content_hash", "details"])


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in install_sql():
            schema_editor.execute(statement, params=None)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in uninstall_sql():
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_event_context_seals_archives_reviews")]

    operations = [
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.RunPython(install, uninstall),
    ]
