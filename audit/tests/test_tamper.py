"""Attacks on the trail: each one makes audit_verify fail and name the event."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent, AuditSeal
from audit.services import audit_record, audit_seal
from audit.tests.conftest import verify_output

pytestmark = pytest.mark.django_db(transaction=True)


def _trail(n=6):
    events = [
        audit_record(event_type="file.download", details={"n": i}) for i in range(n)
    ]
    assert audit_seal() == n
    return events


def test_untouched_trail_verifies(sealed_now):
    """An untouched, sealed trail passes."""
    _trail()
    ok, text = verify_output()
    assert ok, text
    assert "audit trail intact: 7 events" in text or "audit trail intact" in text


def test_row_modified_around_the_trigger_is_named(sealed_now, superuser_sql):
    """A superuser who disables the trigger and edits a row is caught."""
    events = _trail()
    target = events[2].pk
    superuser_sql(
        "UPDATE audit_auditevent SET actor_label = 'someone-else' WHERE id = %s",
        [target],
        bypass=True,
    )
    ok, text = verify_output()
    assert not ok
    assert f"first bad: modified: event {target}" in text


def test_row_modified_with_recomputed_hash_is_named(sealed_now, superuser_sql):
    """Recomputing the content hash after an edit does not fool the seal."""
    from audit import chain

    events = _trail()
    target = AuditEvent.objects.get(pk=events[3].pk)
    target.details = {"n": 99}
    forged = chain.content_hash(chain.event_values(target))
    superuser_sql(
        "UPDATE audit_auditevent SET details = '{\"n\": 99}', content_hash = %s "
        "WHERE id = %s",
        [forged, target.pk],
        bypass=True,
    )
    ok, text = verify_output()
    assert not ok
    assert f"first bad: modified: event {target.pk}: hash differs from seal" in text


def test_deleted_row_is_named(sealed_now, superuser_sql):
    events = _trail()
    target = events[1].pk
    superuser_sql("DELETE FROM audit_auditevent WHERE id = %s", [target], bypass=True)
    ok, text = verify_output()
    assert not ok
    assert f"first bad: deleted: event {target}" in text


def test_forged_row_inserted_in_a_gap_is_named(sealed_now, superuser_sql):
    """A row slipped into an id the sealed range skipped is reported as inserted."""
    audit_record(event_type="file.download")
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(event_type="file.download")  # id consumed, rolled back
        raise RuntimeError
    audit_record(event_type="file.download")
    audit_seal()
    ids = list(AuditEvent.objects.values_list("id", flat=True))
    gap = next(i for i in range(ids[0], ids[-1]) if i not in ids)
    source = AuditEvent.objects.get(pk=ids[0])
    superuser_sql(
        "INSERT INTO audit_auditevent (id, occurred_at, event_type, outcome, "
        "actor_label, session_hash, user_agent, device_id, server_host, method, "
        "path, target_type, target_id, release, commit, error_code, "
        "error_description, correlation_id, details, content_hash) "
        "SELECT %s, occurred_at, 'auth.login.success', outcome, 'forger', "
        "session_hash, user_agent, device_id, server_host, method, path, "
        "target_type, target_id, release, commit, error_code, error_description, "
        "correlation_id, details, content_hash FROM audit_auditevent WHERE id = %s",
        [gap, source.pk],
    )
    ok, text = verify_output()
    assert not ok
    assert f"first bad: modified: event {gap}" in text or (
        f"first bad: inserted: event {gap}" in text
    )
    assert f"inserted: event {gap}: not in seal" in text


def test_backdated_forged_row_after_the_seals_is_named(sealed_now, superuser_sql):
    """A forged row appended with an old date is flagged even before sealing."""
    from audit import chain

    events = _trail(3)
    forged = AuditEvent.objects.get(pk=events[0].pk)
    forged.actor_label = "forger"
    forged.content_hash = chain.content_hash(chain.event_values(forged))
    rows = superuser_sql(
        "INSERT INTO audit_auditevent (occurred_at, event_type, outcome, "
        "actor_label, session_hash, user_agent, device_id, server_host, method, "
        "path, target_type, target_id, release, commit, error_code, "
        "error_description, correlation_id, details, content_hash) "
        "SELECT occurred_at - interval '1 day', event_type, outcome, %s, "
        "session_hash, user_agent, device_id, server_host, method, path, "
        "target_type, target_id, release, commit, error_code, error_description, "
        "correlation_id, details, %s FROM audit_auditevent WHERE id = %s "
        "RETURNING id",
        ["forger", forged.content_hash, events[0].pk],
    )
    new_id = rows[0][0]
    ok, text = verify_output()
    assert not ok
    assert f"event {new_id}" in text


def test_swapped_rows_are_named(sealed_now, superuser_sql):
    """Swapping the content of two rows reads as reordering."""
    events = _trail()
    a, b = events[1].pk, events[4].pk
    superuser_sql("UPDATE audit_auditevent SET id = -1 WHERE id = %s", [a], bypass=True)
    superuser_sql("UPDATE audit_auditevent SET id = %s WHERE id = %s", [a, b])
    superuser_sql("UPDATE audit_auditevent SET id = %s WHERE id = -1", [b])
    ok, text = verify_output()
    assert not ok
    assert f"first bad: reordered: event {a}: holds the content sealed as {b}" in text


def test_forged_seal_is_named(sealed_now, superuser_sql):
    """A seal whose digests were rewritten fails its signature."""
    events = _trail()
    seal = AuditSeal.objects.get()
    superuser_sql(
        "UPDATE audit_auditseal SET head = %s WHERE id = %s",
        ["f" * 64, seal.pk],
        bypass=True,
    )
    ok, text = verify_output()
    assert not ok
    assert f"forged-seal: event {events[0].pk}" in text


def test_deleted_seal_is_named(sealed_now, superuser_sql, settings):
    settings.AUDIT_SEAL_BATCH = 2
    _trail(6)
    assert AuditSeal.objects.count() == 3
    middle = AuditSeal.objects.get(seq=2)
    superuser_sql("DELETE FROM audit_auditseal WHERE seq = 2", None, bypass=True)
    ok, text = verify_output()
    assert not ok
    assert "missing-seal" in text
    assert f"inserted: event {middle.first_id}: not in seal" in text or (
        "seal 3 does not follow seal 1" in text
    )


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET actor_label = 'x'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
        "UPDATE audit_auditseal SET head = 'x'",
        "DELETE FROM audit_auditseal",
    ],
)
def test_application_role_cannot_change_the_trail(sealed_now, sql):
    """The app's own database role is refused UPDATE, DELETE and TRUNCATE."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    _trail(2)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL kreo.audit_truncate_ok = 'off'")
            cursor.execute("SET LOCAL kreo.audit_purge = 'on'")
            cursor.execute(sql)
    assert AuditEvent.objects.count() == 2 + 0


def test_separate_application_role_has_no_update_or_truncate_grant(
    sealed_now, superuser_sql
):
    """With the grants of audit/sql.py, an application role that does not own
    the tables may insert and read events but not update or truncate them."""
    import uuid

    import psycopg

    from audit.sql import grants_sql

    _trail(2)
    role = f"kreo_app_{uuid.uuid4().hex[:8]}"
    superuser_sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        for statement in grants_sql(role):
            superuser_sql(statement)
        params = connection.get_connection_params()
        with psycopg.connect(
            host=params.get("host") or "127.0.0.1",
            port=params.get("port") or 5432,
            user=role,
            dbname=connection.settings_dict["NAME"],
            autocommit=True,
        ) as app:
            assert app.execute("SELECT count(*) FROM audit_auditevent").fetchone()[0]
            for sql in (
                "UPDATE audit_auditevent SET actor_label = 'x'",
                "TRUNCATE audit_auditevent",
                "UPDATE audit_auditseal SET head = 'x'",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(sql)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("DELETE FROM audit_auditevent")
    finally:
        superuser_sql(f'DROP OWNED BY "{role}"')
        superuser_sql(f'DROP ROLE "{role}"')
    assert AuditEvent.objects.count() == 2


def test_a_fake_archive_row_gets_the_application_role_no_delete(
    sealed_now, superuser_sql, settings
):
    """Attack 3: the app role inserts an archive row claiming the events,
    sets the purge flag and deletes. Refused: the app role holds no DELETE;
    only the purge role (its own URL) removes events, and only those a
    verified archive holds."""
    import uuid

    import psycopg

    from audit import archive
    from audit.models import ArchiveState, AuditArchive
    from audit.sql import grants_sql, purge_grants_sql

    events = _trail(3)
    app_role = f"kreo_app_{uuid.uuid4().hex[:8]}"
    purge_role = f"kreo_purge_{uuid.uuid4().hex[:8]}"
    params = connection.get_connection_params()
    host, port = params.get("host") or "127.0.0.1", params.get("port") or 5432
    name = connection.settings_dict["NAME"]
    superuser_sql(f'CREATE ROLE "{app_role}" LOGIN')
    superuser_sql(f'CREATE ROLE "{purge_role}" LOGIN')
    try:
        for statement in grants_sql(app_role) + purge_grants_sql(purge_role):
            superuser_sql(statement)
        with psycopg.connect(
            host=host, port=port, user=app_role, dbname=name, autocommit=True
        ) as app:
            app.execute(
                "INSERT INTO audit_auditarchive (first_seal, last_seal, first_id, "
                "last_id, count, bucket, key, manifest_key, sha256, size, state, "
                "object_lock, created_at, updated_at) VALUES (1, 1, %s, %s, 3, "
                "'b', 'fake', 'fake.json', '', 0, 'verified', false, now(), now())",
                [events[0].pk, events[-1].pk],
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with app.transaction():
                    app.execute("SET LOCAL kreo.audit_purge = 'on'")
                    app.execute("DELETE FROM audit_auditevent")
        assert AuditEvent.objects.count() == 3
        # The purge role, as the archiver uses it, removes what the (here
        # genuine) verified archive row covers, and nothing else.
        settings.AUDIT_PURGE_DATABASE_URL = (
            f"postgresql://{purge_role}@{host}:{port}/{name}"
        )
        fake = AuditArchive.objects.get(key="fake")
        fake.last_id = events[1].pk
        fake.save()
        assert archive.purge(fake) == 2
        assert list(AuditEvent.objects.values_list("pk", flat=True)) == [events[2].pk]
        assert AuditArchive.objects.get(key="fake").state == ArchiveState.PURGED
        with psycopg.connect(
            host=host, port=port, user=purge_role, dbname=name, autocommit=True
        ) as purger:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append"):
                with purger.transaction():
                    purger.execute("SET LOCAL kreo.audit_purge = 'on'")
                    purger.execute("DELETE FROM audit_auditevent")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                purger.execute("UPDATE audit_auditevent SET actor_label = 'x'")
    finally:
        for role in (app_role, purge_role):
            superuser_sql(f'DROP OWNED BY "{role}"')
            superuser_sql(f'DROP ROLE "{role}"')
    assert AuditEvent.objects.count() == 1
