"""A local, append-only spool for audit events the database could not take.

While the database is unreachable, ``audit_record`` appends each event here
as one JSON line (fsync'd before it returns) instead of losing it. The
spool is written to the trail, oldest first, as soon as the database
answers: at the start of the next event written outside a transaction in
any process of this host, and by the ``audit.tasks.spool_drain`` beat task.

The spool is per pod by design (its disk is the one thing that works while
the database is out), so every pod drains its own: at its next event, as
above, whatever process it is. The beat task reaches only the spool of the
worker that runs it; a web pod's spool never waits for it. The locks below
are ``flock``s on that pod's own folder, which no other pod touches.

Layout of ``AUDIT_SPOOL_DIR`` (one per host; a volume on Kubernetes):

- ``events.jsonl``: events waiting, appended under ``spool.lock``;
- ``draining.jsonl``: the batch being written (renamed from events.jsonl,
  so new events keep appending while it drains);
- ``drain.lock``: held by the one process draining;
- ``full.json``: present while events were refused because the spool
  reached ``AUDIT_SPOOL_MAX_BYTES`` (how many, since when); ``/readyz``
  reports it and the next drain records it as an ``audit.spool.overflow``
  event;
- ``rejected.jsonl``: lines that could not be read back (never silently
  dropped).

Each spooled event carries a UUID (``spool_id``, unique in the table), so a
drain interrupted mid-way never writes an event twice. Drained events are
stored with their original ``occurred_at`` and ``spooled=True``; the flag is
part of their content hash, and they are sealed like any other event.

Nothing here runs on the normal request path but one ``stat`` every
``CHECK_SECONDS``: the fsync happens only when the database is out.
"""

import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit import chain, keys
from audit.models import AuditEvent

logger = logging.getLogger(__name__)

SPOOL = "events.jsonl"
DRAINING = "draining.jsonl"
LOCK = "spool.lock"
DRAIN_LOCK = "drain.lock"
FULL = "full.json"
REJECTED = "rejected.jsonl"
CHUNK = 500
CHECK_SECONDS = 1.0

OVERFLOW_EVENT = "audit.spool.overflow"

# Per process: whether this process knows of spooled events, when it last
# looked at the folder for others' events, and whether it is draining now.
_state = {"pending": False, "checked": 0.0, "draining": False}


def spool_dir() -> Path:
    return Path(settings.AUDIT_SPOOL_DIR)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(name: str, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``name``; yield False if busy (non-blocking)."""
    folder = spool_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            got = True
        except BlockingIOError:
            got = False
        yield got
    finally:
        os.close(fd)  # releases the lock


def _append_bytes(path: Path, data: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def event_row(event: AuditEvent) -> dict:
    """The spooled form of an event: its content columns and its spool id."""
    row = chain.event_values(event)
    row["occurred_at"] = event.occurred_at.isoformat(timespec="microseconds")
    row["spool_id"] = str(event.spool_id)
    row.pop("spooled", None)
    row.pop("mac_key_id", None)
    if row.get("event_uid"):
        row["event_uid"] = str(row["event_uid"])
    return row


def _summary(row: dict) -> str:
    return (
        f"{row.get('event_type')} {row.get('outcome')} at {row.get('occurred_at')} "
        f"{row.get('method')} {row.get('path')} status {row.get('status_code')} "
        f"correlation {row.get('correlation_id')}"
    )


def spool_append(event: AuditEvent) -> bool:
    """Append ``event`` to the spool and fsync it; False if it was refused.

    A full spool (``AUDIT_SPOOL_MAX_BYTES``) or a folder that cannot be
    written refuses the event with a CRITICAL log line naming it; a full one
    also counts it in ``full.json`` for ``/readyz`` and the next drain.
    """
    event.spooled = True
    event.spool_id = event.spool_id or uuid.uuid4()
    row = event_row(event)
    line = (json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n").encode()
    folder = spool_dir()
    try:
        with _locked(LOCK):
            used = _size(folder / SPOOL) + _size(folder / DRAINING)
            if used + len(line) > settings.AUDIT_SPOOL_MAX_BYTES:
                refused = _note_refused(folder)
                logger.critical(
                    "audit spool full (%d of %d bytes, KREO_AUDIT_SPOOL_MAX_BYTES): "
                    "event refused and LOST: %s; %d refused since the spool filled",
                    used,
                    settings.AUDIT_SPOOL_MAX_BYTES,
                    _summary(row),
                    refused,
                )
                return False
            _append_bytes(folder / SPOOL, line)
    except OSError as exc:
        logger.critical(
            "audit spool %s cannot be written (%s): event LOST: %s",
            folder,
            exc,
            _summary(row),
        )
        return False
    _state["pending"] = True
    logger.warning("audit: database unavailable, event spooled: %s", _summary(row))
    return True


def _note_refused(folder: Path) -> int:
    """Count one refused event in ``full.json`` (caller holds the spool lock)."""
    path = folder / FULL
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        state = {"since": timezone.now().isoformat(), "refused": 0}
    state["refused"] = int(state.get("refused", 0)) + 1
    state["last"] = timezone.now().isoformat()
    tmp = folder / (FULL + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return state["refused"]


def spool_status() -> dict:
    """What a health check reads: bytes waiting, and whether events were refused."""
    folder = spool_dir()
    pending = _size(folder / SPOOL) + _size(folder / DRAINING)
    try:
        full = json.loads((folder / FULL).read_text())
    except (FileNotFoundError, ValueError):
        full = None
    return {
        "pending_bytes": pending,
        "max_bytes": settings.AUDIT_SPOOL_MAX_BYTES,
        "full": full is not None,
        "refused": int(full.get("refused", 0)) if full else 0,
        "full_since": full.get("since") if full else None,
    }


def _event(row: dict) -> AuditEvent:
    values = {name: row.get(name) for name in chain.CONTENT_FIELDS}
    values["occurred_at"] = datetime.fromisoformat(row["occurred_at"])
    values["details"] = row.get("details") or {}
    for name in (
        "actor_label",
        "session_hash",
        "user_agent",
        "device_id",
        "server_host",
        "method",
        "path",
        "target_type",
        "target_id",
        "release",
        "commit",
        "error_code",
        "error_description",
        "correlation_id",
    ):
        values[name] = values[name] or ""
    event = AuditEvent(**values, spooled=True, spool_id=uuid.UUID(row["spool_id"]))
    if row.get("event_uid"):
        event.event_uid = uuid.UUID(row["event_uid"])
    # MACed again as it is written: the spool file is on local disk, outside
    # the trail's protection until then.
    chain.sign_event(event, *keys.event_key_current())
    return event


def _rows(path: Path) -> Iterator[dict]:
    """The readable lines of a spool file; anything else goes to rejected.jsonl."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                row = json.loads(raw) if raw.endswith(b"\n") else None
                if row is not None:
                    uuid.UUID(row["spool_id"])
                    datetime.fromisoformat(row["occurred_at"])
            except (ValueError, KeyError, TypeError):
                row = None
            if row is None:
                _append_bytes(path.parent / REJECTED, raw.rstrip(b"\n") + b"\n")
                logger.critical(
                    "audit spool: line %d of %s cannot be read; kept in %s",
                    number,
                    path,
                    REJECTED,
                )
                continue
            yield row


def _write_chunk(rows: list[dict]) -> int:
    """Insert the rows not written yet, in order, in one transaction."""
    from audit.services import lock_sealer

    with transaction.atomic():
        # No seal may be cut while these (old-dated) rows are in flight.
        lock_sealer()
        ids = [row["spool_id"] for row in rows]
        have = {
            str(value)
            for value in AuditEvent.objects.filter(spool_id__in=ids).values_list(
                "spool_id", flat=True
            )
        }
        events = [_event(row) for row in rows if row["spool_id"] not in have]
        AuditEvent.objects.bulk_create(events, batch_size=CHUNK)
    return len(events)


def _drain_file(path: Path) -> int:
    written, chunk = 0, []
    for row in _rows(path):
        chunk.append(row)
        if len(chunk) >= CHUNK:
            written += _write_chunk(chunk)
            chunk = []
    if chunk:
        written += _write_chunk(chunk)
    return written


def spool_drain() -> int:
    """Write spooled events to the trail, oldest first; return how many.

    One process drains at a time (others return 0 at once). Raises the
    database's error if it is still out; what was not written stays spooled.
    """
    folder = spool_dir()
    if not folder.exists():
        return 0
    written = 0
    with _locked(DRAIN_LOCK, blocking=False) as got:
        if not got:
            return 0
        _state["draining"] = True
        try:
            while True:
                draining = folder / DRAINING
                if draining.exists():
                    written += _drain_file(draining)
                    draining.unlink()
                    _fsync_dir(folder)
                with _locked(LOCK):
                    if _size(folder / SPOOL) == 0:
                        break
                    os.replace(folder / SPOOL, draining)
                    _fsync_dir(folder)
            _record_overflow(folder)
        finally:
            _state["draining"] = False
    _state["pending"] = False
    if written:
        logger.warning("audit: %d spooled events written to the trail", written)
    return written


def _record_overflow(folder: Path) -> None:
    """Put the count of refused events on the trail, then clear the flag."""
    from audit.buffer import immediate
    from audit.models import Outcome
    from audit.services import audit_record

    path = folder / FULL
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    refused = int(state.get("refused", 0))
    with immediate():  # its stored row says whether the flag may be cleared
        event = audit_record(
            event_type=OVERFLOW_EVENT,
            actor_label="audit spool",
            outcome=Outcome.ERROR,
            error_code="spool.full",
            error_description=(
                f"{refused} audit events were refused and lost: the spool was "
                f"full (since {state.get('since')})"
            ),
            details=state,
        )
    if event.pk is None:
        return  # spooled itself: the database went away again
    with _locked(LOCK):
        try:
            now = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return
        left = int(now.get("refused", 0)) - refused
        if left <= 0:
            path.unlink(missing_ok=True)
        else:
            now["refused"] = left
            tmp = folder / (FULL + ".tmp")
            tmp.write_text(json.dumps(now))
            os.replace(tmp, path)


def spool_drain_if_pending() -> None:
    """Drain before a write when this host has spooled events; never raises.

    Never inside a transaction: its rollback would undo the drained rows
    after the spool let go of them.

    Cheap when nothing is spooled: a flag, and one ``stat`` of the folder's
    files every ``CHECK_SECONDS`` (events spooled by other processes). While
    the database is still out the drain fails at its first query and the
    caller's event is spooled after the others, so the order holds.
    """
    if _state["draining"]:
        return
    now = time.monotonic()
    if not _state["pending"]:
        if now - _state["checked"] < CHECK_SECONDS:
            return
        _state["checked"] = now
        folder = spool_dir()
        waiting = _size(folder / SPOOL) or (folder / DRAINING).exists()
        if not (waiting or (folder / FULL).exists()):
            return
        _state["pending"] = True
    if connection.in_atomic_block:
        return  # a rollback of the caller's transaction would undo the drain
    try:
        spool_drain()
    except Exception as exc:  # the caller's own write must still happen
        logger.warning("audit spool not drained yet: %s: %s", type(exc).__name__, exc)
