"""The scheduled check, run by the real ``celery beat`` and a real worker,
raises its alert after a tail deletion with no manual step."""

import os
import subprocess  # nosec B404  (test: starts our own beat)
import sys
import time
from pathlib import Path

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from audit.models import AuditEvent
from audit.tests.test_anchors import _cut_after, _seals
from kreo.schedule import sync_default_schedule
from kreo.testing.worker import WorkerProcess, database_url

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _beat(log: Path) -> subprocess.Popen:
    """``celery -A kreo beat`` on the test database and the test's broker/queue."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
        "DATABASE_URL": database_url(),
    }
    with open(log, "wb") as out:
        return subprocess.Popen(  # noqa: S603  # nosec B603
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "kreo",
                "beat",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.celery
def test_beat_runs_the_hot_check_and_it_fails_after_a_cut_tail(
    sealed_now, attacker_sql, tmp_path
):
    """Seeded from DEFAULT_SCHEDULE (the hot check made every second here), beat
    sends ``audit verify hot``, a worker runs it: a failed ``audit.verify``
    event naming the cut seal and a CRITICAL line in the worker's log."""
    seals = _seals(3)
    _cut_after(attacker_sql, seals[1])
    sync_default_schedule()
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    assert PeriodicTask.objects.filter(
        name="audit verify hot", task="audit.tasks.verify_hot"
    ).update(interval=every_second)
    PeriodicTask.objects.exclude(name="audit verify hot").update(enabled=False)
    worker = WorkerProcess(
        tmp_path / "worker.log", AUDIT_ANCHOR_DIR=str(sealed_now.AUDIT_ANCHOR_DIR)
    )
    beat = _beat(tmp_path / "beat.log")
    try:
        deadline = time.monotonic() + 90
        failed = None
        while time.monotonic() < deadline and failed is None:
            assert worker.alive(), worker.output()
            assert beat.poll() is None, (tmp_path / "beat.log").read_text()
            failed = AuditEvent.objects.filter(
                event_type="audit.verify",
                actor_label="celery audit.tasks.verify_hot",
                outcome="failure",
            ).first()
            time.sleep(0.5)
    finally:
        os.killpg(beat.pid, 15)
        beat.wait(30)
        worker.stop()
    beat_log = (tmp_path / "beat.log").read_text(errors="replace")
    assert failed is not None, beat_log + worker.output()
    assert "Sending due task audit verify hot (audit.tasks.verify_hot)" in beat_log
    assert failed.error_code == "truncated"
    assert failed.error_description.startswith(
        f"truncated: seal 3 (events to {seals[2].last_id}) is anchored (anchor 3)"
    )
    assert "CRITICAL" in worker.output()
    assert "audit trail verification (hot) FAILED" in worker.output()
