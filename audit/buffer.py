"""Group commit for audit events that belong to no business transaction.

An event recorded inside ``transaction.atomic`` stays in that transaction
(atomic with the change it records). An event of its own (a request event
written after the response, a sign-in failure, a task's event) recorded in a
*deferred context* goes to a per-process buffer instead, and the buffer is
written with one multi-row INSERT in one transaction:

- when it holds ``AUDIT_BUFFER_MAX_EVENTS`` events, or its oldest event is
  ``AUDIT_BUFFER_MAX_MS`` old (a background flusher thread);
- when a view has answered, before the answer is sent (``AuditMiddleware``:
  what a page recorded is in the trail when the page arrives), and at the
  end of each request (``request_finished``, after the response went out:
  the request's own event) and of each Celery task (``task_postrun``);
- when a ``buffered()`` block ends, and at process exit (``atexit``, Celery's
  ``worker_process_shutdown``; a gunicorn worker exits through ``sys.exit``,
  which runs ``atexit``).

Deferred contexts: a request or a Celery task in progress, or an explicit
``with buffered():``. Anywhere else (management commands, a direct call) an
event is written at once, as before. On PostgreSQL only (``AUDIT_GROUP_COMMIT``):
the embedded SQLite default has one writer and gains nothing.

Crash window: a process killed outright loses the events in its buffer, at
most ``AUDIT_BUFFER_MAX_MS`` of them (plus the database's own asynchronous
commit window, ``AUDIT_ASYNC_COMMIT``); a batch is one transaction, so it is
in the trail whole or not at all. A flush the database refuses (it is out)
goes to the outage spool (``audit/spool.py``), nothing is lost.

Order and the sealer: a buffered event's ``occurred_at`` is taken when it is
recorded, its id when the batch is inserted (a few ms later). The sealer
(``audit_seal``) seals in id order and must never move past an id that is
not visible yet. Each flush takes the sealer's advisory lock in *shared*
mode for its transaction (flushes never wait on each other), and the sealer
takes it exclusively: a seal is never cut while a batch is in flight, and a
batch that starts after it gets ids above every id the seal could read. So
however late a batch commits, no event of it is skipped. Readers that do not
lock (``audit.selectors.events_after`` with a settle window) stop at the
first event younger than their window; a buffered event is at most
``AUDIT_BUFFER_MAX_MS`` older than its id, far inside that window (5 s).
"""

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)

logger = logging.getLogger(__name__)

# A flusher thread with nothing to do for this long exits (and lets its
# database connection go); the next buffered event starts another.
IDLE_SECONDS = 2.0
# Past this many times AUDIT_BUFFER_MAX_EVENTS waiting, the recording thread
# flushes itself: writers faster than the database slow down, memory stays
# bounded.
BACKPRESSURE = 4

_lock = threading.Lock()  # guards the fields below
_wake = threading.Condition(_lock)
_flush_lock = threading.Lock()  # one flush at a time: batches go in order
_state: dict = {"events": [], "oldest": 0.0, "flusher": None}
_local = threading.local()


def _reset_after_fork() -> None:
    """A forked child starts empty: its parent flushes the events it holds
    (copied, they would be written twice)."""
    global _lock, _wake, _flush_lock
    _lock = threading.Lock()
    _wake = threading.Condition(_lock)
    _flush_lock = threading.Lock()
    _state.update(events=[], oldest=0.0, flusher=None)


os.register_at_fork(after_in_child=_reset_after_fork)


def _deferred() -> bool:
    return bool(getattr(_local, "request", False) or getattr(_local, "depth", 0))


def wanted() -> bool:
    """Whether an event recorded now goes to the buffer."""
    return (
        _deferred()
        and not getattr(_local, "off", 0)
        and settings.AUDIT_GROUP_COMMIT
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    )


@contextmanager
def buffered() -> Iterator[None]:
    """Buffer the events recorded in this block (outside transactions); the
    block's end writes them."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        if not _deferred():
            flush()


@contextmanager
def immediate() -> Iterator[None]:
    """Write the events recorded in this block at once (a caller that needs
    the stored row, as the spool's overflow record)."""
    _local.off = getattr(_local, "off", 0) + 1
    try:
        yield
    finally:
        _local.off -= 1


def add(event) -> None:
    """Queue a signed event; wake the flusher when a batch is full."""
    limit = settings.AUDIT_BUFFER_MAX_EVENTS
    with _lock:
        events = _state["events"]
        if not events:
            _state["oldest"] = time.monotonic()
        events.append(event)
        waiting = len(events)
        if _state["flusher"] is None:
            thread = threading.Thread(
                target=_flusher, name="kreo-audit-flusher", daemon=True
            )
            _state["flusher"] = thread
            thread.start()
        elif waiting >= limit:
            _wake.notify()
    if waiting >= BACKPRESSURE * limit:
        flush()


def pending() -> int:
    with _lock:
        return len(_state["events"])


def flush() -> int:
    """Write every buffered event (one transaction); return how many.

    When it returns, every event this thread buffered before the call is in
    the trail (or in the spool if the database is out).
    """
    if connection.in_atomic_block:
        # Never inside the caller's transaction: the flusher writes them.
        with _lock:
            _wake.notify()
        return 0
    try:
        # The connection first, the flush lock second: a thread must never
        # wait for the pool while holding the lock, since the threads queued
        # on the lock hold the pool's connections (a deadlock until the
        # pool's timeout, every request meanwhile a 503).
        connection.ensure_connection()
    except (OperationalError, InterfaceError) as exc:
        with _lock:
            batch = _state["events"]
            _state["events"] = []
        if batch:
            logger.warning("audit: no connection for %d (%s): spooled", len(batch), exc)
            _spool(batch)
        return len(batch)
    with _flush_lock:
        with _lock:
            batch = _state["events"]
            _state["events"] = []
        if batch:
            _write_batch(batch)
    return len(batch)


def _write_batch(batch: list) -> None:
    from audit.models import AuditEvent

    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                if settings.AUDIT_ASYNC_COMMIT:
                    # No fsync wait: the WAL writer flushes within ~600 ms.
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
                # Shared with other flushes, exclusive with the sealer (see
                # the module docstring: no seal while a batch is in flight).
                cursor.execute(
                    "SELECT pg_advisory_xact_lock_shared(hashtext('kreo.audit.seal'))"
                )
                with connection.wrap_database_errors:  # psycopg's, as Django's
                    _copy(cursor, AuditEvent, batch)
    except (OperationalError, InterfaceError) as exc:
        logger.warning("audit: flush of %d failed (%s): spooled", len(batch), exc)
        _close_quietly()
        _spool(batch)
    except DatabaseError:
        # One bad row (a duplicated event uid) must not take the batch with it.
        logger.exception("audit: batch of %d refused; writing one by one", len(batch))
        _one_by_one(batch)


def _copy(cursor, model, batch: list) -> None:
    """COPY the batch into the events table: less Python per row than
    ``bulk_create`` (no per-field preparation, no ids returned: a buffered
    event's id is never read)."""
    from psycopg.types.json import Jsonb

    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    attnames = [f.attname for f in fields]
    table = connection.ops.quote_name(model._meta.db_table)
    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for event in batch:
            values = [getattr(event, name) for name in attnames]
            values[attnames.index("details")] = Jsonb(event.details)
            copy.write_row(values)


def _one_by_one(batch: list) -> None:
    from audit.services import write_now

    for event in batch:
        event.pk = None
        try:
            write_now(event)
        except DatabaseError:
            logger.critical("audit: event %s could not be written", event.event_uid)


def _spool(batch: list) -> None:
    from audit import chain, keys, spool

    for event in batch:
        event.pk = None
        event.spooled = True
        chain.sign_event(event, *keys.event_key_current())
        if not spool.spool_append(event):
            logger.critical("audit: event %s LOST (spool refused it)", event.event_uid)


def _close_quietly() -> None:
    try:
        connection.close()
    except DatabaseError:
        pass


def _flusher() -> None:
    """Flush when a batch is full or its oldest event is AUDIT_BUFFER_MAX_MS old;
    exit after IDLE_SECONDS with nothing to do."""
    try:
        while True:
            with _lock:
                while True:
                    max_age = settings.AUDIT_BUFFER_MAX_MS / 1000
                    limit = settings.AUDIT_BUFFER_MAX_EVENTS
                    events = _state["events"]
                    if events:
                        age = time.monotonic() - _state["oldest"]
                        if len(events) >= limit or age >= max_age:
                            break
                        _wake.wait(max_age - age)
                    elif not _wake.wait(IDLE_SECONDS) and not _state["events"]:
                        _state["flusher"] = None
                        return
            try:
                flush()
            except Exception:
                logger.exception("audit: background flush failed")
    finally:
        with _lock:
            if _state["flusher"] is threading.current_thread():
                _state["flusher"] = None
        _close_quietly()


# -- where deferred contexts begin and end -------------------------------------


def request_started(**kwargs) -> None:
    _local.request = True


def request_finished(**kwargs) -> None:
    """After the response went out: write what the request (and others) buffered."""
    if not getattr(_local, "request", False):
        return
    _local.request = False
    _flush_logged()


def request_answered() -> None:
    """The view is done and its answer not yet sent: write what is buffered,
    so that the events a page recorded are in the trail when its answer
    leaves (the next page, or a test, reads them). One INSERT whose commit
    is not waited for (``AUDIT_ASYNC_COMMIT``): no request waits on an fsync.
    The request's own event, written at ``close()``, goes at the end."""
    if pending():
        _flush_logged()


def task_prerun(**kwargs) -> None:
    _local.depth = getattr(_local, "depth", 0) + 1


def task_postrun(**kwargs) -> None:
    _local.depth = max(0, getattr(_local, "depth", 0) - 1)
    if not _deferred():
        _flush_logged()


def shutdown(**kwargs) -> None:
    _flush_logged()


def _flush_logged() -> None:
    try:
        flush()
    except Exception:
        logger.exception("audit: flush failed")


def connect() -> None:
    """Hook the buffer to the request, the task and the process lifecycles."""
    from django.core.signals import request_finished as finished
    from django.core.signals import request_started as started
    from django.db import close_old_connections

    started.connect(request_started, dispatch_uid="kreo.audit.buffer.started")
    # Before Django's own close_old_connections: the flush uses the request's
    # connection, which Django then lets go (or hands back to the pool).
    connected = finished.disconnect(close_old_connections)
    finished.connect(request_finished, dispatch_uid="kreo.audit.buffer.finished")
    if connected:
        finished.connect(close_old_connections)
    try:
        from celery import signals
    except ImportError:  # pragma: no cover - celery is a dependency
        signals = None
    if signals is not None:
        signals.task_prerun.connect(task_prerun, dispatch_uid="kreo.audit.prerun")
        signals.task_postrun.connect(task_postrun, dispatch_uid="kreo.audit.postrun")
        signals.worker_process_shutdown.connect(shutdown, dispatch_uid="kreo.audit.wps")
        signals.worker_shutdown.connect(shutdown, dispatch_uid="kreo.audit.ws")
    atexit.register(_flush_logged)
