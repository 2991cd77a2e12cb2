"""What long tasks share so that a killed worker loses nothing.

- ``exclusive``: one run at a time across processes and, on PostgreSQL,
  across hosts (a session advisory lock, released by the server as soon as
  the holder's connection drops, so a SIGKILLed worker never leaves it held).
  Pods share no disk: on PostgreSQL the advisory lock is the one that
  counts, the ``flock`` only spares a second process of the same host a
  database round trip (the embedded SQLite default has no other lock). Its
  users: backups (``backup``: create, prune), audit archives
  (``audit-archive``) and the purge (``purge``, which settles the erasure
  ledger); the seal takes a transaction advisory lock of its own
  (audit.services) and key rotation locks each key's row.
- ``Heartbeat``: a small thread that stamps a row every few seconds while the
  work runs, so a sweep can tell a live run from one whose worker died.
- ``stream_pause``: the test-only throttle (``KREO_TEST_STREAM_DELAY``, read
  by the test settings only), so a test can kill a worker mid-stream.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection, connections

logger = logging.getLogger(__name__)


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_try_advisory_lock``."""
    digest = hashlib.sha256(f"kreo:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def exclusive(name: str, folder: Path) -> Iterator[bool]:
    """Hold the lock ``name``; yield False at once if another holder has it.

    Always a ``flock`` on ``folder/.<name>.lock`` (processes of one host);
    on PostgreSQL also a session advisory lock (pods sharing the database).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / f".{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        advisory = connection.vendor == "postgresql"
        key = _advisory_key(name)
        try:
            if advisory:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                    if not cursor.fetchone()[0]:
                        yield False
                        return
            try:
                yield True
            finally:
                if advisory:
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Heartbeat:
    """Call ``beat`` every ``KREO_TASK_HEARTBEAT_SECONDS`` in a daemon thread.

    ``beat`` runs on the thread's own database connection, closed at the
    end; an error (database briefly out) is logged and the next beat tries
    again: a missed beat only brings the sweep closer, it never fails a run
    whose worker is alive (the sweep also needs the run's lock to be free).
    """

    def __init__(self, beat: Callable[[], None], every: float | None = None):
        self.beat = beat
        self.every = every or settings.KREO_TASK_HEARTBEAT_SECONDS
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="kreo-heartbeat", daemon=True
        )

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001  (logged; next beat retries)
                    logger.warning("task heartbeat not written", exc_info=True)
        finally:
            connections.close_all()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def stream_pause() -> None:
    """Sleep ``KREO_TEST_STREAM_DELAY`` seconds (tests only; 0 elsewhere)."""
    delay = getattr(settings, "KREO_TEST_STREAM_DELAY", 0)
    if delay:
        time.sleep(delay)
