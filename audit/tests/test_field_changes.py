"""Field changes (django-auditlog) inside the chain: mirrored as keyed,
sealed events, append-only in the database, no flush, purged only after
their events are archived (issue #13, attack 4)."""

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.tests.factories import UserFactory
from audit.models import AuditEvent
from audit.services import audit_seal
from audit.tests.conftest import verify_output
from audit.tests.test_keyed import app_sql  # noqa: F401 (fixture)
from projects import services as project_services

pytestmark = pytest.mark.django_db(transaction=True)


def _rename(owner, name):
    project = project_services.project_create(actor=owner, name="Tower A")
    project_services.project_update(actor=owner, project=project, name=name)
    return project


def test_a_field_change_is_a_keyed_sealed_event_in_the_chain():
    owner = UserFactory()
    project = _rename(owner, "Tower B")
    entry = LogEntry.objects.filter(
        object_pk=str(project.pk), action=LogEntry.Action.UPDATE
    ).get()
    event = AuditEvent.objects.get(
        event_type="record.update", target_id=str(project.pk)
    )
    assert event.target_type == "projects.project"
    assert event.details["log_entry"] == entry.pk
    assert event.details["changes"]["name"] == ["Tower A", "Tower B"]
    assert event.mac and event.event_uid
    audit_seal()
    ok, text = verify_output()
    assert ok, text
    # Changing the mirrored change in the hot store breaks the chain.
    if connection.vendor == "sqlite":
        AuditEvent.objects.filter(pk=event.pk).update(
            details={**event.details, "changes": {"name": ["Tower A", "Tower C"]}}
        )
        ok, text = verify_output()
        assert not ok
        assert str(event.pk) in text


def test_a_password_change_is_recorded_masked():
    user = UserFactory()
    user.set_password("a new secret 1234")
    user.save()
    event = AuditEvent.objects.filter(
        event_type="record.update", target_type="accounts.user"
    ).latest("id")
    changed = event.details["changes"]["password"]
    assert "a new secret" not in str(changed)
    assert "pbkdf2" not in str(changed) and "argon2" not in str(changed)


def test_auditlogflush_is_refused_and_nothing_is_removed():
    _rename(UserFactory(), "Tower B")
    before = LogEntry.objects.count()
    with pytest.raises(CommandError, match="auditlogflush is disabled"):
        call_command("auditlogflush", "--yes")
    assert LogEntry.objects.count() == before > 0


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_app_role_cannot_change_delete_or_truncate_field_changes(app_sql):  # noqa: F811
    owner = UserFactory()
    project = _rename(owner, "Tower B")
    entry_id = LogEntry.objects.filter(object_pk=str(project.pk)).latest("id").pk
    attacks = [
        "UPDATE auditlog_logentry SET changes_text = 'nothing' WHERE id = %s",
        "UPDATE auditlog_logentry SET actor_id = NULL, object_repr = 'x' WHERE id = %s",
        "DELETE FROM auditlog_logentry WHERE id = %s",
        "BEGIN; SET LOCAL kreo.audit_purge = 'on'; "
        "DELETE FROM auditlog_logentry WHERE id = %s; COMMIT",
    ]
    import psycopg

    for sql in attacks:
        with pytest.raises(psycopg.Error):
            app_sql(sql, [entry_id] if sql.count("%s") else None)
        app_sql("ROLLBACK")
    with pytest.raises(psycopg.Error):
        app_sql("TRUNCATE auditlog_logentry")
    assert LogEntry.objects.filter(pk=entry_id).exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_deleting_a_user_still_clears_the_actor_of_their_field_changes():
    """The one UPDATE the guard lets through: the actor key set to NULL."""
    from auditlog.context import set_actor

    owner = UserFactory()
    with set_actor(owner):
        project = _rename(owner, "Tower B")
    entries = LogEntry.objects.filter(object_pk=str(project.pk), actor=owner)
    assert entries.exists()
    ids = list(entries.values_list("pk", flat=True))
    project.delete()
    owner.delete()
    assert not LogEntry.objects.filter(pk__in=ids, actor__isnull=False).exists()
    assert LogEntry.objects.filter(pk__in=ids).count() == len(ids)


def test_the_purge_removes_only_entries_older_than_the_hot_trail(settings):
    from datetime import timedelta

    from django.utils import timezone

    from audit import archive

    _rename(UserFactory(), "Tower B")
    old = LogEntry.objects.order_by("id").first()
    if connection.vendor == "postgresql":
        # As the owner would after a restore: back-date one entry.
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE auditlog_logentry DISABLE TRIGGER USER")
            cursor.execute(
                "UPDATE auditlog_logentry SET timestamp = %s WHERE id = %s",
                [timezone.now() - timedelta(days=60), old.pk],
            )
            cursor.execute("ALTER TABLE auditlog_logentry ENABLE TRIGGER USER")
    else:
        LogEntry.objects.filter(pk=old.pk).update(
            timestamp=timezone.now() - timedelta(days=60)
        )
    total = LogEntry.objects.count()
    assert archive.purge_field_changes() == 1
    assert LogEntry.objects.count() == total - 1
    assert not LogEntry.objects.filter(pk=old.pk).exists()
