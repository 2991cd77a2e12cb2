"""Scheduled jobs really run: a real worker, and on the embedded default a real beat."""

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from kreo.celery import app
from kreo.models import Heartbeat
from kreo.tasks import heartbeat

ROOT = Path(__file__).resolve().parents[2]


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
