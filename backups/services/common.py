"""What the backup services share: progress reports, copy folders, the lock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from backups.manifest import MANIFEST, set_folder
from kreo.worker import exclusive, stream_pause

__all__ = ["MANIFEST", "set_folder"]

Progress = Callable[[str], None] | None

BUSY = "Another backup is running; try again when it has finished."
ARTIFACT_MISMATCH = "{name}: SHA-256 or size differs from the manifest."

DB_ARTIFACT = {"postgresql": "db.pgdump.enc", "sqlite": "db.sqlite3.enc"}
FILES_1 = "files.tar.enc"
DATA_2 = "data.jsonl.age"
FILES_2 = "files.tar.age"
REPORT_EVERY = 64 * 1024 * 1024


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _counted(chunks: Iterable[bytes], label: str, progress: Progress):
    done, next_report = 0, REPORT_EVERY
    for piece in chunks:
        stream_pause()
        done += len(piece)
        if done >= next_report:
            _say(progress, f"  {label}: {done / 1048576:,.0f} MiB")
            next_report += REPORT_EVERY
        yield piece


def _hashed(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    for piece in chunks:
        digest.update(piece)
        yield piece


def _partial(folder: Path) -> Path:
    return folder.with_name(folder.name + ".partial")


@contextmanager
def _exclusive():
    """One backup at a time: a file lock in copy 1's folder and, on PostgreSQL,
    an advisory lock, so workers on other hosts sharing the database wait too."""
    with exclusive("backup", Path(settings.BACKUP_COPY1_DIR)) as got:
        if not got:
            raise RuntimeError(BUSY)
        yield
