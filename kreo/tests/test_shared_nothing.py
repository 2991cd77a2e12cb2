"""Shared-nothing instances: the task locks hold across pods that share no disk.

Two Python processes stand for two pods: each has its own KREO_VAR_DIR and
its own backup folder (its own "disk"), both use the one PostgreSQL. They
take the backup lock (through backups' own ``_exclusive``), the audit
archive lock and the purge lock at the same moment: exactly one wins, the
other is told the lock is busy, although each took the ``flock`` in its own
folder (a file lock alone would have let both run). The winner is then
killed with SIGKILL, as a pod dies: a third pod takes the lock at once, the
server having released it with the dead pod's connection.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess  # nosec B404 - the test starts its own "pods"
import sys
from pathlib import Path

import pytest
from django.db import connection

from backups.services.common import BUSY
from kreo.tests.test_settings import ROOT

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"),
        reason="pods share a PostgreSQL (the embedded SQLite default is one host)",
    ),
]

# Take the lock when told to ("go"), say whether it was won, hold it until
# told to stop.
POD = """
import json, sys
from pathlib import Path
from django.conf import settings
from backups.services import common
from kreo.worker import exclusive

name = sys.argv[1]
print("ready", flush=True)
sys.stdin.readline()
if name == "backup":
    lock, busy = common._exclusive(), RuntimeError
else:
    lock, busy = exclusive(name, Path(settings.VAR_DIR) / "locks"), None
try:
    with lock as got:
        won = got is not False
        print(json.dumps({"won": won}), flush=True)
        sys.stdin.readline()
except RuntimeError as exc:
    print(json.dumps({"won": False, "error": str(exc)}), flush=True)
    sys.stdin.readline()
"""
LOCKS = ["backup", "audit-archive", "purge"]


class Pod:
    """A Django process with a disk of its own, on the test database."""

    def __init__(self, disk: Path, lock: str):
        self.disk = disk
        db = connection.settings_dict
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "KREO_VAR_DIR", "BACKUP_"))
        }
        env = {
            **clean,
            "DJANGO_SETTINGS_MODULE": "kreo.settings.test",
            "DATABASE_URL": (
                f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}"
                f":{db['PORT'] or 5432}/{db['NAME']}"
            ),
            "KREO_VAR_DIR": str(disk / "var"),
            "BACKUP_COPY1_DIR": str(disk / "copy1"),
            "BACKUP_COPY2_DIR": str(disk / "copy2"),
        }
        self.process = subprocess.Popen(  # noqa: S603 # nosec B603 - fixed command
            [sys.executable, "-c", _script(), lock],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def line(self) -> str:
        got = self.process.stdout.readline()
        assert got, f"pod on {self.disk} exited ({self.process.wait(30)})"
        return got.strip()

    def say(self, word: str) -> None:
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


def _script() -> str:
    return "import django; django.setup()\n" + POD


def _lock_file(disk: Path, lock: str) -> Path:
    folder = disk / ("copy1" if lock == "backup" else "var/locks")
    return folder / f".{lock}.lock"


@pytest.mark.parametrize("lock", LOCKS)
def test_two_pods_contend_for_a_lock_and_one_wins(tmp_path, lock):
    pods = [Pod(tmp_path / name, lock) for name in ("pod-a", "pod-b")]
    third = None
    try:
        for pod in pods:
            assert pod.line() == "ready"
        for pod in pods:
            pod.say("go")
        results = [json.loads(pod.line()) for pod in pods]
        assert sorted(r["won"] for r in results) == [False, True], results
        if lock == "backup":
            loser = next(r for r in results if not r["won"])
            assert loser["error"] == BUSY
        # Each took the file lock on its own disk: flock alone let both in.
        for pod in pods:
            assert _lock_file(pod.disk, lock).exists()
        winner = pods[[r["won"] for r in results].index(True)]
        loser = pods[[r["won"] for r in results].index(False)]
        loser.say("stop")
        # The winning pod dies mid-task; its lock goes with its connection.
        winner.process.send_signal(signal.SIGKILL)
        winner.process.wait(30)
        third = Pod(tmp_path / "pod-c", lock)
        assert third.line() == "ready"
        third.say("go")
        assert json.loads(third.line()) == {"won": True}
        third.say("stop")
        assert third.process.wait(30) == 0
    finally:
        for pod in [*pods, third]:
            if pod is not None:
                pod.stop()
