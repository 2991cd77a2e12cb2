"""Keyed, unique events: attacks with the application database role's rights.

The attacker may INSERT into the audit tables (the grants of audit/sql.py)
and knows every algorithm, but not AUDIT_EVENT_KEY, which the database never
holds. A forged or replayed row is never sealed as genuine and audit_verify
names it.
"""

import json
import logging
import uuid
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection
from django.utils import timezone

from audit import chain
from audit.models import AuditEvent, AuditSeal
from audit.services import audit_record, audit_seal
from audit.sql import grants_sql
from audit.tests.conftest import make_old_events, verify_output

pytestmark = pytest.mark.django_db(transaction=True)

COLUMNS = (
    *chain.CONTENT_FIELDS,
    "content_hash",
    "event_uid",
    "mac_key_id",
    "mac",
)


@pytest.fixture
def app_sql(request):
    """Run SQL with the application role's rights: on PostgreSQL a role that
    holds only the grants of ``grants_sql``; on SQLite the app's connection."""
    if connection.vendor != "postgresql":

        def run_here(sql, args=None):
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall() if cursor.description else None

        yield run_here
        return
    superuser_sql = request.getfixturevalue("superuser_sql")
    role = f"kreo_app_{uuid.uuid4().hex[:8]}"
    superuser_sql(f'CREATE ROLE "{role}" LOGIN')
    for statement in grants_sql(role):
        superuser_sql(statement)
    params = connection.get_connection_params()
    app = psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        user=role,
        dbname=connection.settings_dict["NAME"],
        autocommit=True,
    )

    def run(sql, args=None):
        with app.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else None

    yield run
    app.close()
    superuser_sql(f'DROP OWNED BY "{role}"')
    superuser_sql(f'DROP ROLE "{role}"')


def _insert(run, values: dict) -> int:
    row = {name: values.get(name) for name in COLUMNS}
    row["details"] = json.dumps(row["details"] or {})
    row["event_uid"] = str(row["event_uid"]) if row["event_uid"] else None
    for name in ("mac_key_id", "mac"):
        row[name] = row[name] or ""
    for name in COLUMNS:
        if row[name] is None and name not in (
            "actor_id",
            "source_ip",
            "source_port",
            "status_code",
            "event_uid",
        ):
            row[name] = ""
    names = ", ".join(map(_quote, COLUMNS))
    marks = ", ".join(["%s"] * len(COLUMNS))
    # Column names are this module's constants.
    sql = f"INSERT INTO audit_auditevent ({names}, spooled) VALUES ({marks}, %s) RETURNING id"  # noqa: S608, E501
    return run(sql, [row[name] for name in COLUMNS] + [False])[0][0]


def _quote(name: str) -> str:
    return f'"{name}"'


def _forged_login(**extra) -> dict:
    """A made-up sign-in of the admin, hashed exactly as the app hashes."""
    nullable = ("actor_id", "source_port", "status_code")
    values = {
        **{name: None if name in nullable else "" for name in chain.CONTENT_FIELDS},
        "occurred_at": timezone.now(),
        "event_type": "auth.login.success",
        "outcome": "success",
        "actor_label": "admin@example.test",
        "source_ip": "203.0.113.66",
        "method": "POST",
        "path": "/accounts/login/",
        "details": {},
        **extra,
    }
    values["content_hash"] = chain.content_hash(values)
    return values


def _trail(n=3):
    audit_seal()  # what came before (a user's creation is a record.create)
    events = [
        audit_record(event_type="file.download", details={"n": i}) for i in range(n)
    ]
    assert audit_seal() == n
    return events


def test_forged_login_with_plain_hash_is_rejected_and_named(
    sealed_now, app_sql, caplog, django_user_model
):
    """An INSERT of a sign-in with a correct SHA-256 but no MAC is not sealed
    as genuine: the seal lists it as rejected, the sealer logs CRITICAL and
    mails the auditors, and audit_verify fails naming it."""
    from django.contrib.auth.models import Group
    from django.core import mail

    from kreo.permissions import AUDITOR_GROUP

    auditor = django_user_model.objects.create_user(
        email="auditor@example.test", password="x" * 20
    )
    auditor.groups.add(Group.objects.get_or_create(name=AUDITOR_GROUP)[0])
    _trail()
    forged = _insert(app_sql, _forged_login())
    with caplog.at_level(logging.CRITICAL, logger="audit.services"):
        audit_seal()
    seal = AuditSeal.objects.get(first_id__lte=forged, last_id__gte=forged)
    assert seal.rejected == [forged]
    assert f"event {forged} (auth.login.success" in caplog.text
    assert "REJECTED" in caplog.text
    alarm = AuditEvent.objects.get(event_type="audit.seal.rejected")
    assert alarm.details["rejected"] == [forged]
    assert "REJECTED" in mail.outbox[-1].subject
    assert mail.outbox[-1].to == ["auditor@example.test"]
    ok, text = verify_output()
    assert not ok
    assert (
        f"first bad: forged: event {forged}: auth.login.success {chain.NO_MAC}; "
        f"rejected by seal {seal.seq}, never sealed as genuine"
    ) in text


def test_forged_login_with_made_up_mac_is_rejected_and_named(sealed_now, app_sql):
    """A forged keyed row (own uid, current key id, a guessed MAC) fails its MAC."""
    _trail()
    kid = AuditEvent.objects.order_by("-id").values_list("mac_key_id", flat=True)[0]
    values = _forged_login(event_uid=chain.uuid7(), mac_key_id=kid)
    values["content_hash"] = chain.content_hash(values)
    values["mac"] = "ab" * 32
    forged = _insert(app_sql, values)
    audit_seal()
    seal = AuditSeal.objects.get(first_id__lte=forged, last_id__gte=forged)
    assert seal.rejected == [forged]
    ok, text = verify_output()
    assert not ok
    assert (
        f"first bad: forged: event {forged}: auth.login.success "
        f"{chain.BAD_MAC.format(kid=kid)}; rejected by seal {seal.seq}"
    ) in text


def test_forged_event_is_named_before_it_is_sealed(sealed_now, app_sql):
    """The hot check names a forged row that no seal covers yet."""
    _trail()
    forged = _insert(app_sql, _forged_login())
    ok, text = verify_output("--hot-only")
    assert not ok
    assert f"first bad: forged: event {forged}: auth.login.success" in text


def test_exact_replay_is_refused_by_the_unique_event_id(sealed_now, app_sql):
    """Copying a recorded row as it is (new id, same content) is refused."""
    events = _trail()
    columns = ", ".join(map(_quote, (*COLUMNS, "spooled")))
    with pytest.raises((psycopg.errors.UniqueViolation, IntegrityError)):
        app_sql(
            f"INSERT INTO audit_auditevent ({columns}) SELECT {columns} "  # noqa: S608
            "FROM audit_auditevent WHERE id = %s",
            [events[1].pk],
        )
    assert AuditEvent.objects.count() == 3


def test_replay_under_a_new_event_id_is_rejected(sealed_now, app_sql):
    """A replay that changes only the event id fails the MAC (the id is MACed)."""
    events = _trail()
    source = AuditEvent.objects.values(*COLUMNS).get(pk=events[1].pk)
    source["event_uid"] = chain.uuid7()
    source["content_hash"] = chain.content_hash(source)
    replay = _insert(app_sql, source)
    audit_seal()
    assert AuditSeal.objects.get(last_id__gte=replay, first_id__lte=replay).rejected
    ok, text = verify_output()
    assert not ok
    assert f"first bad: forged: event {replay}: file.download MAC does not" in text


def test_unknown_key_id_is_rejected(sealed_now, app_sql):
    """An event naming a key id the ring does not hold is rejected."""
    _trail()
    values = _forged_login(event_uid=chain.uuid7(), mac_key_id="k9")
    values["content_hash"] = chain.content_hash(values)
    values["mac"] = "00" * 32
    forged = _insert(app_sql, values)
    audit_seal()
    seal = AuditSeal.objects.get(first_id__lte=forged, last_id__gte=forged)
    assert seal.rejected == [forged]
    ok, text = verify_output()
    assert not ok
    assert (
        f"forged: event {forged}: auth.login.success "
        f"{chain.UNKNOWN_KEY.format(kid='k9')}"
    ) in text


def test_rotated_key_ring_verifies_old_and_new_events(sealed_now, settings):
    """audit_keys_rotate puts a new key id first: new events use it, old ones
    still verify; a ring that drops the old id names the old events."""
    settings.AUDIT_EVENT_KEY = "k1:" + "a" * 40
    old = _trail(2)
    out = StringIO()
    call_command("audit_keys_rotate", "--key-id", "k2", stdout=out, stderr=StringIO())
    ring = out.getvalue().strip().removeprefix("AUDIT_EVENT_KEY=")
    assert ring.startswith("k2:") and ring.endswith(",k1:" + "a" * 40)
    with pytest.raises(CommandError, match="'k1' is in AUDIT_EVENT_KEY already"):
        call_command("audit_keys_rotate", "--key-id", "k1", stdout=StringIO())
    settings.AUDIT_EVENT_KEY = ring
    new = [audit_record(event_type="file.download") for _ in range(2)]
    assert audit_seal() == 3  # and the rotation's own audit.keys.rotate event
    kids = dict(AuditEvent.objects.values_list("id", "mac_key_id"))
    assert [kids[e.pk] for e in old + new] == ["k1", "k1", "k2", "k2"]
    rotated = AuditEvent.objects.get(event_type="audit.keys.rotate")
    assert rotated.details == {"key": "AUDIT_EVENT_KEY", "new_key_id": "k2"}
    ok, text = verify_output()
    assert ok, text
    assert "5 MACs checked, 0 legacy" in text
    settings.AUDIT_EVENT_KEY = ring.split(",")[0]
    ok, text = verify_output()
    assert not ok
    assert f"first bad: forged: event {old[0].pk}: file.download MAC key id 'k1'" in (
        text
    )


def test_legacy_events_still_verify_and_are_counted(sealed_now):
    """Events written before event MACs verify as before, marked legacy."""
    make_old_events(5, days_ago=1, legacy=True)
    audit_seal()
    _trail(2)
    ok, text = verify_output()
    assert ok, text
    assert "2 MACs checked, 5 legacy (written before event MACs" in text
    assert all(not seal.rejected for seal in AuditSeal.objects.all())


def test_archived_events_keep_their_mac_and_verify(archive_bucket):
    """Archived events carry event id, key id and MAC; audit_verify checks
    the MACs of archived and hot events, legacy ones counted apart."""
    from audit import archive

    make_old_events(300, days_ago=41, legacy=True)
    make_old_events(300, days_ago=40)
    audit_seal()
    summary = archive.run()
    assert summary["purged"] == 600
    audit_record(event_type="file.download")
    ok, text = verify_output()
    assert ok, text
    # The 300 keyed archived events, the hot one and the archive run's events.
    checked = int(text.split(" MACs checked")[0].rsplit(" ", 1)[-1])
    assert checked >= 301
    assert f"{checked} MACs checked, 300 legacy" in text
