"""Backups taken after the real Celery beat has written its schedule rows.

Beat's DatabaseScheduler adds rows of its own (the ``celery.backend_cleanup``
crontab entry, whose time zone field once made every copy fail) and updates
ours as it runs. These tests start the real ``celery beat`` on the test
database, as ``make run`` does, then back up and restore."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from backups import databases, services
from backups.models import CopyState, SetState
from backups.tests import allmodels
from kreo.testing.worker import database_url

ROOT = Path(__file__).resolve().parents[2]
CLEANUP = "celery.backend_cleanup"


def _beat_env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    # The beat's broker is a folder of its own: no worker of this run takes
    # the heartbeats it sends.
    env.update(KREO_VAR_DIR=str(var_dir), DATABASE_URL=database_url())
    return env


@pytest.fixture
def beat(transactional_db, tmp_path):
    """The real ``celery -A kreo beat`` with the DatabaseScheduler, on the test
    database; our heartbeat runs every second. Yields a function that stops it
    (beat writes its last-run times on the way out) and returns its log."""
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    assert PeriodicTask.objects.filter(name="kreo heartbeat").update(
        interval=every_second
    )
    log = tmp_path / "beat.log"
    celery = str(Path(sys.executable).parent / "celery")
    with open(log, "wb") as out:
        process = subprocess.Popen(  # noqa: S603
            [
                celery,
                "-A",
                "kreo",
                "beat",
                "--scheduler",
                "django_celery_beat.schedulers:DatabaseScheduler",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
            env=_beat_env(tmp_path / "beat-var"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def stop() -> str:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        return log.read_text(errors="replace")

    try:
        yield process, stop, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _wait_for_beat(process, log: Path, timeout: float = 90) -> None:
    """Until beat has made its cleanup entry and sent our heartbeat twice."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        text = log.read_text(errors="replace")
        if (
            PeriodicTask.objects.filter(name=CLEANUP).exists()
            and text.count("Sending due task kreo heartbeat") >= 2
        ):
            return
        time.sleep(0.5)
    pytest.fail(f"beat did not start in {timeout}s:\n{log.read_text()}")


def test_backup_after_real_beat_is_good_and_restores_identical(
    beat, offsite, tmp_path, request
):
    """With the real beat running on the database (its backend_cleanup crontab
    entry written, our schedule ticking), a backup is good with three good
    copies and verifies; once beat has stopped and saved its run times, a
    backup's logical copy restores into an empty database on the other engine
    with every table identical, field by field, to the live one."""
    process, stop, log = beat
    _wait_for_beat(process, log)
    cleanup = PeriodicTask.objects.get(name=CLEANUP)
    assert cleanup.crontab is not None
    assert str(cleanup.crontab.timezone) == "UTC"

    during = services.backup_create()
    assert during.state == SetState.GOOD, during.error
    assert [c.state for c in during.copies.order_by("number")] == [CopyState.DONE] * 3
    report = services.backup_verify(backup_set=during)
    assert all(r["ok"] for r in report), report
    assert "django_celery_beat_crontabschedule" in during.manifest["tables"]

    output = stop()
    assert process.returncode is not None
    assert "Traceback" not in output, output
    heartbeat = PeriodicTask.objects.get(name="kreo heartbeat")
    assert heartbeat.total_run_count >= 2 and heartbeat.last_run_at is not None

    # The tables as they stand (the backup's own audit event comes after).
    live = allmodels.table_rows("default")
    after = services.backup_create()
    assert after.state == SetState.GOOD, after.error
    other = (
        f"sqlite:///{tmp_path / 'restored.sqlite3'}"
        if connection.vendor == "postgresql"
        else request.getfixturevalue("pg_scratch_url")
    )
    services.backup_restore(
        set_id=after.pk, copy=2, target_db=other, restore_files=False
    )
    alias = databases.alias_for_url(other)
    try:
        restored = allmodels.table_rows(alias)
        stats = databases.table_stats(alias)
        zone = CrontabSchedule.objects.using(alias).get(pk=cleanup.crontab_id).timezone
    finally:
        databases.drop_alias(alias)
    assert allmodels.differences(live, restored) == []
    assert stats == after.manifest["tables"]
    assert str(zone) == "UTC"
    assert (
        restored["django_celery_beat.PeriodicTask"]
        == live["django_celery_beat.PeriodicTask"]
    )
