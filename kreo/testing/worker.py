"""A real ``celery worker`` process on the test database, that a test can kill.

The process reads the test settings (same broker and queue as the test, the
test database, this test's folders, keys and buckets), runs in a session of
its own, and ``kill()`` sends SIGKILL to the whole group (the worker and any
``pg_dump`` it started), as a container kill or the OOM killer would.
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404  (test helper: starts our own worker)
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The URL of the test database this process uses (not the configured one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{db['NAME']}"


def _settings_env() -> dict[str, str]:
    """This test's settings that the worker must share, as environment."""
    from backups import crypto

    env = {
        "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
        "DATABASE_URL": database_url(),
        "KREO_KEY_LEDGER_DIR": str(settings.KREO_KEY_LEDGER_DIR),
        "BACKUP_COPY1_DIR": str(settings.BACKUP_COPY1_DIR),
        "BACKUP_COPY2_DIR": str(settings.BACKUP_COPY2_DIR),
        "BACKUP_ENCRYPTION_KEY": settings.BACKUP_ENCRYPTION_KEY,
        "BACKUP_MANIFEST_KEY": settings.BACKUP_MANIFEST_KEY,
        "BACKUP_AGE_IDENTITY_FILE": str(settings.BACKUP_AGE_IDENTITY_FILE),
        "BACKUP_AGE_RECIPIENT": crypto.age_recipient(),
        "BACKUP_S3_BUCKET": settings.BACKUP_S3_BUCKET,
        "BACKUP_S3_ENDPOINT_URL": settings.BACKUP_S3_ENDPOINT_URL,
        "BACKUP_S3_LOCK_DAYS": str(settings.BACKUP_S3_LOCK_DAYS),
        "AUDIT_ARCHIVE_S3_BUCKET": settings.AUDIT_ARCHIVE_S3_BUCKET,
        "AUDIT_ARCHIVE_S3_ENDPOINT_URL": settings.AUDIT_ARCHIVE_S3_ENDPOINT_URL,
        "AUDIT_ARCHIVE_S3_REGION": settings.AUDIT_ARCHIVE_S3_REGION,
        "AUDIT_ARCHIVE_MAX_EVENTS": str(settings.AUDIT_ARCHIVE_MAX_EVENTS),
        "AUDIT_SEAL_DELAY_SECONDS": str(settings.AUDIT_SEAL_DELAY_SECONDS),
        "AUDIT_SEAL_BATCH": str(settings.AUDIT_SEAL_BATCH),
        "AUDIT_ANCHOR_DIR": str(settings.AUDIT_ANCHOR_DIR),
    }
    storage = settings.STORAGES["default"]
    if storage["BACKEND"].endswith("FileSystemStorage"):
        env["KREO_MEDIA_ROOT"] = str(storage["OPTIONS"]["location"])
    return env


class WorkerProcess:
    """``celery -A kreo worker --pool solo`` with ``extra`` environment."""

    def __init__(self, log: Path, **extra: str):
        self.log = log
        env = {**os.environ, **_settings_env(), **extra}
        celery = str(Path(sys.executable).parent / "celery")
        with open(log, "ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # nosec B603
                [
                    celery,
                    "-A",
                    "kreo",
                    "worker",
                    "--pool",
                    "solo",
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "-n",
                    f"test-{uuid.uuid4().hex[:8]}@%h",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and every process it started."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(20)

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
