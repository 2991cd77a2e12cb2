"""Scheduled jobs really run: a real worker, and on the embedded default a real beat."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from amqp.exceptions import ChannelError
from celery.contrib.testing.worker import start_worker
from django.db import connection

from kreo.celery import app
from kreo.models import Heartbeat
from kreo.tasks import heartbeat

ROOT = Path(__file__).resolve().parents[2]


def test_backup_tasks_go_to_the_backups_queue_alone():
    """Through the configured broker (Redis, or the embedded default's
    folder): a backup task lands in the backups queue only, any other task in
    the default queue only; each exactly once."""
    default = app.conf.task_default_queue
    backups = next(q.name for q in app.conf.task_queues if q.name != default)

    def count(channel, name: str) -> int:
        try:
            return channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:  # Redis keeps no empty queue: none waiting
            return 0

    def waiting() -> dict[str, int]:
        with app.connection_for_write() as conn:
            return {
                name: count(conn.default_channel, name) for name in (default, backups)
            }

    with app.connection_for_write() as conn:
        for queue in app.conf.task_queues:
            queue.bind(conn.default_channel).declare()
            queue.bind(conn.default_channel).purge()
    try:
        app.send_task("backups.tasks.backup_prune")
        assert waiting() == {default: 0, backups: 1}
        app.send_task("kreo.tasks.heartbeat")
        assert waiting() == {default: 1, backups: 1}
    finally:
        with app.connection_for_write() as conn:
            for queue in app.conf.task_queues:
                queue.bind(conn.default_channel).purge()


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_queued_task(settings):
    """The task goes through the configured broker (Redis on the PostgreSQL leg)."""
    broker = app.conf.broker_url
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        heartbeat.delay()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Heartbeat.objects.filter(component="scheduler").exists():
                break
            time.sleep(0.2)
    beat = Heartbeat.objects.get(component="scheduler")
    assert beat.count == 1
    expected = "redis" if settings.REDIS_URL else "filesystem"
    assert broker.startswith(expected), (broker, connection.vendor)


def _env(var_dir: Path) -> dict:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "AWS_", "KREO_"))
    }
    return {
        **keep,
        "KREO_VAR_DIR": str(var_dir),
        "KREO_HEARTBEAT_SECONDS": "1",
        "DJANGO_SETTINGS_MODULE": "kreo.settings.local",
    }


@pytest.mark.celery
@pytest.mark.skipif(
    os.environ.get("KREO_TEST_LEG") == "postgres",
    reason="the embedded default is exercised on the SQLite leg",
)
def test_embedded_default_runs_beat_and_worker_with_no_server(tmp_path):
    """With no environment, beat schedules the heartbeat and a worker runs it."""
    env = _env(tmp_path)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    celery = str(Path(sys.executable).parent / "celery")
    worker = subprocess.Popen(
        [celery, "-A", "kreo", "worker", "--pool", "solo", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    beat = subprocess.Popen(
        [
            celery,
            "-A",
            "kreo",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(tmp_path / "beat-schedule"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    count = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and count < 3:
            time.sleep(1)
            with sqlite3.connect(tmp_path / "db.sqlite3") as db:
                row = db.execute(
                    "SELECT count FROM kreo_heartbeat WHERE component='scheduler'"
                ).fetchone()
            count = row[0] if row else 0
    finally:
        for process in (beat, worker):
            process.terminate()
        for process in (beat, worker):
            process.wait(20)
    assert count >= 3, "beat and worker did not run the heartbeat three times"
