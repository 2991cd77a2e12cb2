"""No audit event is lost to a database outage: spooled, then written late."""

import json
import logging

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from audit import spool
from audit.models import AuditEvent, Outcome
from audit.services import audit_record, audit_seal
from audit.tasks import spool_drain
from audit.tests.conftest import verify_output
from audit.verify import audit_verify
from kreo.testing.outage import database_down

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def spool_dir(settings, tmp_path):
    settings.AUDIT_SPOOL_DIR = tmp_path / "spool"
    return settings.AUDIT_SPOOL_DIR


def _spooled_bytes(folder) -> bytes:
    """What waits, oldest first: a failed drain leaves its batch in draining."""
    return b"".join(
        (folder / name).read_bytes()
        for name in (spool.DRAINING, spool.SPOOL)
        if (folder / name).exists()
    )


def _outage_events(tmp_path, count, **extra):
    with database_down(tmp_path):
        return [
            audit_record(event_type="test.outage", details={"n": n}, **extra)
            for n in range(count)
        ]


def test_spooled_events_reach_the_trail_in_order_with_their_time_and_flag(
    settings, sealed_now, spool_dir, tmp_path
):
    """Events recorded while the database is out are fsync'd to the spool, one
    JSON line each; the drain writes them in order with their original time
    and spooled=True, they are sealed like any other event, and audit_verify
    passes and counts them, though they are dated before an event the trail
    took first."""
    settings.AUDIT_CLOCK_SKEW_SECONDS = 0
    spooled = _outage_events(tmp_path, 3, outcome=Outcome.FAILURE)
    assert [event.pk for event in spooled] == [None, None, None]
    lines = _spooled_bytes(spool_dir).decode().splitlines()
    assert [json.loads(line)["details"] for line in lines] == [
        {"n": 0},
        {"n": 1},
        {"n": 2},
    ]
    assert AuditEvent.objects.count() == 0

    with transaction.atomic():  # no drain inside a transaction
        later = audit_record(event_type="test.after")
    assert spool_drain() == 3
    assert _spooled_bytes(spool_dir) == b""

    rows = list(AuditEvent.objects.filter(event_type="test.outage").order_by("id"))
    assert [row.details["n"] for row in rows] == [0, 1, 2]
    assert [row.occurred_at for row in rows] == [e.occurred_at for e in spooled]
    assert all(row.spooled and row.outcome == Outcome.FAILURE for row in rows)
    assert rows[0].pk > later.pk and rows[0].occurred_at < later.occurred_at
    assert not AuditEvent.objects.get(pk=later.pk).spooled

    assert audit_seal() == 4
    report = audit_verify(archives=False)
    assert report.ok, report.problems
    assert (report.events, report.spooled, report.unsealed) == (4, 3, 0)
    ok, text = verify_output("--hot-only")
    assert ok, text
    assert "3 written late from the outage spool" in text


def test_the_next_write_drains_the_spool_first(tmp_path):
    """Once the database answers, the next event written outside a
    transaction writes the spooled ones before itself."""
    spooled = _outage_events(tmp_path, 2)
    after = audit_record(event_type="test.after")
    order = list(AuditEvent.objects.order_by("id").values_list("event_type", "id"))
    assert [kind for kind, _ in order] == ["test.outage", "test.outage", "test.after"]
    assert order[-1][1] == after.pk
    assert len(spooled) == 2


def test_an_interrupted_drain_never_writes_an_event_twice(spool_dir, tmp_path):
    """A drain that stopped after writing (before removing its file) leaves the
    batch behind; the next drain skips every event already on the trail."""
    _outage_events(tmp_path, 3)
    batch = _spooled_bytes(spool_dir)
    assert spool_drain() == 3
    (spool_dir / spool.DRAINING).write_bytes(batch)  # as a crash would leave it
    assert spool_drain() == 0
    assert AuditEvent.objects.filter(event_type="test.outage").count() == 3
    assert not (spool_dir / spool.DRAINING).exists()


def test_only_one_process_drains_at_a_time(spool_dir, tmp_path):
    """While another process holds the drain lock, a drain writes nothing and
    the events stay spooled for the next one."""
    _outage_events(tmp_path, 2)
    with spool._locked(spool.DRAIN_LOCK) as got:
        assert got
        assert spool_drain() == 0
        assert AuditEvent.objects.count() == 0
    assert spool_drain() == 2


def test_a_torn_line_is_kept_aside_not_dropped(spool_dir, tmp_path):
    """A line cut short by a crash mid-append is moved to rejected.jsonl with
    a CRITICAL log; the good lines around it are written."""
    _outage_events(tmp_path, 2)
    with open(spool_dir / spool.SPOOL, "ab") as fh:
        fh.write(b'{"event_type":"test.torn","occurred')
    assert spool_drain() == 2
    assert b"test.torn" in (spool_dir / spool.REJECTED).read_bytes()


def test_a_full_spool_refuses_loudly_and_says_so_until_recorded(
    settings, caplog, client, spool_dir, tmp_path
):
    """Past KREO_AUDIT_SPOOL_MAX_BYTES an event is refused with a CRITICAL log
    naming it; /readyz answers 503 "full" with the count until the next drain,
    which writes an audit.spool.overflow error event saying how many were
    lost, and clears the flag."""
    _outage_events(tmp_path, 1)
    settings.AUDIT_SPOOL_MAX_BYTES = len(_spooled_bytes(spool_dir)) + 100
    with caplog.at_level(logging.CRITICAL, logger="audit.spool"):
        with database_down(tmp_path):
            for n in range(2):
                with pytest.raises(OperationalError):
                    audit_record(event_type="test.outage", details={"n": n})
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 2
    assert "audit spool full" in critical[0].getMessage()
    assert "test.outage" in critical[0].getMessage()

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["audit_spool"]["state"] == "full"
    assert ready.json()["checks"]["audit_spool"]["refused_events"] == 2

    # That 503 is itself audited: its write drained the spool first.
    spool_drain()
    assert (
        AuditEvent.objects.filter(event_type="test.outage", spooled=True).count() == 1
    )
    overflow = AuditEvent.objects.get(event_type=spool.OVERFLOW_EVENT)
    assert overflow.outcome == Outcome.ERROR
    assert overflow.error_description.startswith("2 audit events were refused")
    assert client.get("/readyz").status_code == 200


def test_the_spooled_flag_cannot_be_changed_unnoticed(
    sealed_now, superuser_sql_or_orm, tmp_path
):
    """Clearing the spooled flag of a drained event breaks its content hash."""
    _outage_events(tmp_path, 1)
    spool_drain()
    audit_seal()
    event = AuditEvent.objects.get(event_type="test.outage")
    superuser_sql_or_orm(
        "UPDATE audit_auditevent SET spooled = false WHERE id = %s", [event.pk]
    )
    report = audit_verify(archives=False)
    assert not report.ok
    assert report.problems[0].event_id == event.pk
    assert report.problems[0].kind == "modified"


@pytest.fixture
def superuser_sql_or_orm(request):
    """Write past the append-only guard: a superuser on PostgreSQL, plain SQL
    on SQLite (which has no guard)."""
    if connection.vendor == "postgresql":
        run = request.getfixturevalue("superuser_sql")
        return lambda sql, args: run(sql, args, bypass=True)

    def run(sql, args):
        with connection.cursor() as cursor:
            cursor.execute(sql, args)

    return run


def test_the_beat_schedule_drains_every_minute(settings):
    """The default schedule runs the drain task every KREO_AUDIT_SPOOL_DRAIN_SECONDS."""
    from django_celery_beat.models import PeriodicTask

    from kreo.schedule import sync_default_schedule

    sync_default_schedule()
    task = PeriodicTask.objects.get(name="audit spool drain")
    assert task.task == "audit.tasks.spool_drain"
    assert task.interval.every == settings.AUDIT_SPOOL_DRAIN_SECONDS == 60


def test_timestamps_are_the_original_ones(tmp_path):
    """A drained event keeps the microsecond it was recorded at."""
    (event,) = _outage_events(tmp_path, 1)
    assert event.occurred_at <= timezone.now()
    spool_drain()
    assert AuditEvent.objects.get().occurred_at == event.occurred_at


@pytest.mark.usefixtures("archive_bucket")
def test_spooled_events_verify_from_the_archive_too(settings, spool_dir, tmp_path):
    """Archived with their flag: once spooled events have moved to S3 and left
    the hot store, audit_verify still passes over the archive and counts them."""
    from datetime import timedelta

    from audit import archive

    settings.AUDIT_CLOCK_SKEW_SECONDS = 0
    _outage_events(tmp_path, 3)
    with transaction.atomic():
        audit_record(event_type="test.after")
    assert spool_drain() == 3
    audit_seal()
    summary = archive.run(now=timezone.now() + timedelta(days=31))
    assert summary["purged"] == 4
    assert AuditEvent.objects.count() == 0
    ok, text = verify_output()
    assert ok, text
    assert "3 written late from the outage spool" in text
