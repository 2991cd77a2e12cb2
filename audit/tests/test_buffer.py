"""Group commit: events of their own wait in a per-process buffer and reach
the trail whole, in order, keyed and sealable (audit/buffer.py)."""

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection, transaction
from django.http import HttpResponse

from audit import buffer, spool
from audit.middleware import AuditMiddleware
from audit.models import AuditEvent
from audit.services import audit_record, audit_seal
from audit.tests.conftest import verify_output
from kreo.testing.outage import database_down
from kreo.testing.worker import ROOT, _settings_env

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'"),
]


@pytest.fixture(autouse=True)
def group_commit(settings, tmp_path):
    settings.AUDIT_GROUP_COMMIT = True
    settings.AUDIT_SEAL_DELAY_SECONDS = 0
    settings.AUDIT_SPOOL_DIR = tmp_path / "spool"
    yield settings
    buffer.flush()


def _numbers() -> list[int]:
    return [
        d["n"]
        for d in AuditEvent.objects.filter(event_type="test.buffered")
        .order_by("id")
        .values_list("details", flat=True)
    ]


def test_buffered_events_wait_then_all_land_in_order_and_verify(settings):
    """Inside buffered() nothing is written until a trigger; at the block's end
    all 450 events are in the trail in the order recorded, and audit_verify
    checks every MAC and finds the trail intact."""
    settings.AUDIT_BUFFER_MAX_EVENTS = 1000
    settings.AUDIT_BUFFER_MAX_MS = 60_000
    with buffer.buffered():
        events = [
            audit_record(event_type="test.buffered", details={"n": n})
            for n in range(450)
        ]
        assert AuditEvent.objects.count() == 0
        assert all(event.pk is None for event in events)
    assert _numbers() == list(range(450))
    assert audit_seal() == 450
    ok, text = verify_output()
    assert ok, text
    assert "450 MACs checked" in text, text


def test_buffer_flushes_by_age_and_by_size_while_the_block_runs(settings):
    """The flusher writes a full batch (N events) and, after AUDIT_BUFFER_MAX_MS,
    a partial one, while the recording block is still open."""
    settings.AUDIT_BUFFER_MAX_EVENTS = 50
    settings.AUDIT_BUFFER_MAX_MS = 100
    with buffer.buffered():
        for n in range(53):
            audit_record(event_type="test.buffered", details={"n": n})
        deadline = time.monotonic() + 5
        while len(_numbers()) < 53 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _numbers() == list(range(53))


def test_an_event_inside_a_transaction_stays_in_it(settings):
    """In a business transaction the event is written with the change and
    rolled back with it, buffered context or not."""
    with buffer.buffered():
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                audit_record(event_type="test.buffered", details={"n": 0})
                assert AuditEvent.objects.count() == 1
                raise RuntimeError("the business change fails")
    assert AuditEvent.objects.count() == 0


def test_outside_a_deferred_context_the_event_is_written_at_once():
    """A management command or a direct call keeps the immediate write."""
    event = audit_record(event_type="test.buffered", details={"n": 0})
    assert event.pk is not None
    assert _numbers() == [0]


def test_a_request_writes_its_buffered_event_by_the_time_it_finished(client):
    """The request event, written after the response, is in the trail once
    the request finished (request_finished flushes)."""
    response = client.get("/projects/does-not-exist/")
    assert response.status_code in (302, 404)
    assert AuditEvent.objects.filter(path="/projects/does-not-exist/").exists()
    assert buffer.pending() == 0


def test_a_page_s_events_are_in_the_trail_before_its_answer_is_sent(rf, settings):
    """What a view recorded is written when the view has answered, before the
    answer leaves (the next page shows it), not left for the flusher: the
    response is not closed yet when the event is already in the trail."""
    settings.AUDIT_BUFFER_MAX_MS = 60_000

    def view(request):
        audit_record(event_type="test.buffered", details={"n": 1})
        assert _numbers() == []  # buffered while the view runs
        return HttpResponse("ok")

    buffer.request_started()
    response = AuditMiddleware(view)(rf.get("/projects/"))
    try:
        assert _numbers() == [1]
    finally:
        response.close()
        buffer.request_finished()


def test_database_down_at_flush_spools_then_the_drain_writes_them(tmp_path):
    """A flush the database refuses loses nothing: the batch goes to the spool
    and reaches the trail, in order, when the database is back."""
    with buffer.buffered():
        for n in range(5):
            audit_record(event_type="test.buffered", details={"n": n})
        with database_down(tmp_path):
            assert buffer.flush() == 5
    assert AuditEvent.objects.count() == 0
    assert spool.spool_status()["pending_bytes"] > 0
    assert spool.spool_drain() == 5
    assert _numbers() == list(range(5))
    assert AuditEvent.objects.filter(spooled=True).count() == 5
    audit_seal()
    ok, text = verify_output()
    assert ok, text


CHILD = """
import os, sys, time
import django
django.setup()
from audit import buffer
from audit.services import audit_record
mode, count = sys.argv[1], int(sys.argv[2])
with buffer.buffered():
    if mode == "kill":
        for n in range(100):
            audit_record(event_type="test.buffered", details={"n": n})
        buffer.flush()
        for n in range(100, 100 + count):
            audit_record(event_type="test.buffered", details={"n": n})
        print("flushing", flush=True)
        buffer.flush()
        print("flushed", flush=True)
        time.sleep(60)
    for n in range(count):
        audit_record(event_type="test.buffered", details={"n": n, "pid": os.getpid()})
"""


def _child(mode: str, count: int, **extra) -> subprocess.Popen:
    env = {**os.environ, **_settings_env(), "AUDIT_GROUP_COMMIT": "true", **extra}
    return subprocess.Popen(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", CHILD, mode, str(count)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_process_killed_mid_buffer_loses_only_its_buffer_never_half_a_batch():
    """SIGKILL while a 5,000-event batch is being written: the trail holds the
    100 events flushed before, and the batch whole or not at all."""
    child = _child(
        "kill", 5000, AUDIT_BUFFER_MAX_EVENTS="100000", AUDIT_BUFFER_MAX_MS="600000"
    )
    try:
        assert child.stdout.readline().strip() == "flushing"
        time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    numbers = _numbers()
    assert len(numbers) in (100, 5100), len(numbers)
    assert numbers == list(range(len(numbers)))
    audit_seal()
    ok, text = verify_output()
    assert ok, text


def test_concurrent_buffered_writers_leave_a_trail_that_verifies():
    """Three processes recording through group commit at once (batches of 50,
    every 10 ms): every event lands, each process's in its own order, and the
    sealed trail verifies."""
    children = [
        _child("write", 700, AUDIT_BUFFER_MAX_EVENTS="50", AUDIT_BUFFER_MAX_MS="10")
        for _ in range(3)
    ]
    for child in children:
        child.communicate(timeout=120)
        assert child.returncode == 0
    rows = list(AuditEvent.objects.order_by("id").values_list("details", flat=True))
    assert len(rows) == 2100
    for pid in {row["pid"] for row in rows}:
        assert [r["n"] for r in rows if r["pid"] == pid] == list(range(700))
    assert audit_seal() == 2100
    ok, text = verify_output()
    assert ok, text
    assert connection.vendor == "postgresql"


@pytest.mark.parametrize("spooled", [False, True])
@pytest.mark.parametrize("keyed", [False, True])
def test_canonical_fast_path_is_byte_for_byte_the_reference(keyed, spooled):
    """The field-by-field canonical form is the bytes of the one json.dumps
    that defined it (every stored hash and MAC depends on it): non-ASCII,
    nested details, floats, a line separator, None and numbers."""
    import uuid
    from datetime import UTC, datetime

    from audit import chain

    row = {
        "occurred_at": datetime(2026, 12, 3, 10, 0, 0, 1234, tzinfo=UTC),
        "event_type": "auth.login.failure",
        "outcome": "failure",
        "actor_id": 42,
        "actor_label": "zoë@example.test",
        "source_ip": "2001:db8::1",
        "source_port": 51234,
        "user_agent": 'Mozilla "quoted" \\ back\u2028slash',
        "status_code": None,
        "details": {"b": [1, 2.5, 1e16, None, True], "a": {"z": "é", "y": -3}},
        "spooled": spooled,
        "event_uid": uuid.uuid4() if keyed else None,
        "mac_key_id": "k1" if keyed else "",
    }
    assert chain.canonical(row) == chain.canonical_reference(row)
    row["occurred_at"] = row["occurred_at"].isoformat(timespec="microseconds")
    row["actor_id"] = "42"
    assert chain.canonical(row) == chain.canonical_reference(row)
