"""The correlation id of the request (or task) being handled.

Every event recorded while handling one request shares its id, and so do
django-auditlog's field-level change entries (``AUDITLOG_CID_GETTER``).
"""

import uuid
from contextvars import ContextVar

_correlation_id: ContextVar[str] = ContextVar("kreo_audit_correlation_id", default="")
# Events recorded so far under the current correlation id (one-item list, so
# that the request's middleware sees what services appended).
_recorded: ContextVar[list[int] | None] = ContextVar(
    "kreo_audit_recorded", default=None
)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def get_correlation_id() -> str:
    return _correlation_id.get()


def set_correlation_id(value: str):
    """Set the id for this context; returns a token for ``reset_correlation_id``."""
    return (_correlation_id.set(value), _recorded.set([0]))


def reset_correlation_id(token) -> None:
    _correlation_id.reset(token[0])
    _recorded.reset(token[1])


def note_recorded() -> None:
    counter = _recorded.get()
    if counter is not None:
        counter[0] += 1


def recorded_count() -> int:
    counter = _recorded.get()
    return counter[0] if counter is not None else 0


def auditlog_cid() -> str | None:
    """django-auditlog's correlation id getter."""
    return _correlation_id.get() or None


def mask_secret(value) -> str:
    """django-auditlog's mask: nothing of a secret (not even half a hash) stays."""
    return "[masked]" if value not in (None, "") else ""
