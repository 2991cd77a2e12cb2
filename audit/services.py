"""The one recording function every app calls, and the trail's other writes."""

import hashlib
import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone

from audit import buffer, chain, keys, spool
from audit.context import get_correlation_id, new_correlation_id, note_recorded
from audit.models import AuditEvent, AuditReview, AuditSeal, Outcome
from kreo.net import client_ip

logger = logging.getLogger(__name__)

DEVICE_COOKIE = "kreo_device"


# Set on a request whose device cookie was made during it (AuditMiddleware
# sends it with the response).
DEVICE_MINTED = "_kreo_device_minted"


def device_cookie_ensure(request: HttpRequest) -> str:
    """The request's device cookie, made now when the browser sent none, so
    that an event recorded in this request (a sign-in) names the browser it
    was made in; ``audit.middleware.AuditMiddleware`` sets it on the response."""
    value = request.COOKIES.get(DEVICE_COOKIE, "")
    if not value:
        value = new_correlation_id()
        request.COOKIES[DEVICE_COOKIE] = value
        setattr(request, DEVICE_MINTED, value)
    return value


def device_id(request: HttpRequest) -> str:
    """The keyed hash of the request's device cookie, as events store it."""
    return keys.device_hash(request.COOKIES.get(DEVICE_COOKIE, ""))


def _ip(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _source(request: HttpRequest) -> dict:
    meta = request.META
    port = meta.get("REMOTE_PORT")
    # Behind a proxy REMOTE_PORT is the proxy's port, not the client's.
    if settings.KREO_TRUSTED_PROXY_COUNT > 0 or not str(port or "").isdigit():
        port = None
    session = getattr(request, "session", None)
    return {
        "source_ip": _ip(client_ip(request)),
        "source_port": int(port) if port is not None else None,
        "user_agent": meta.get("HTTP_USER_AGENT", "")[:512],
        "device_id": keys.device_hash(request.COOKIES.get(DEVICE_COOKIE, "")),
        "session_hash": keys.session_hash(getattr(session, "session_key", "") or ""),
        "method": (request.method or "")[:8],
        "path": request.path[:512],
    }


def audit_record(
    *,
    event_type: str,
    actor=None,
    request: HttpRequest | None = None,
    outcome: str = Outcome.SUCCESS,
    target: Any = None,
    error_code: str = "",
    error_description: str = "",
    details: dict | None = None,
    actor_label: str = "",
    target_type: str = "",
    target_id: str = "",
    status_code: int | None = None,
    correlation_id: str = "",
    replaces_request_event: bool = True,
) -> AuditEvent:
    """Append one event and return it.

    ``request`` supplies source (IP, port, user agent, device, session hash)
    and destination (method, path); ``actor`` defaults to the request's
    signed-in user. ``actor_label`` names an actor with no account (the
    e-mail tried in a failed login); ``target_type``/``target_id`` name a
    target that is not a model instance (or no longer exists). ``outcome``
    is one of ``Outcome``: success, failure, denied, error.
    ``replaces_request_event=False`` for an event that accompanies the
    request's own (a field change): the middleware still records the request.

    The row carries its content hash; no shared state is read or locked, so
    concurrent requests never wait on each other here.

    Outside a transaction, in a request, a Celery task or a
    ``audit.buffer.buffered()`` block, the event goes through group commit
    (``audit/buffer.py``): it is written with others a few ms later, and the
    returned event has no ``pk`` yet. Elsewhere it is written before this
    returns.

    Outside a transaction, an event the database cannot take (it is out) is
    spooled locally and written when it returns (``audit/spool.py``); the
    returned event then has no ``pk`` yet. Inside a transaction the error
    propagates: the action it records is rolled back with it.
    """
    # Before this event's time is taken, so a long drain cannot make it look
    # back-dated next to events other processes wrote meanwhile.
    spool.spool_drain_if_pending()
    if actor is None and request is not None:
        actor = _request_actor(request)
    if actor is not None and not actor_label:
        actor_label = getattr(actor, "email", "") or str(actor.pk)
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    event = AuditEvent(
        occurred_at=timezone.now(),
        event_type=event_type[:64],
        outcome=str(outcome),
        actor_id=actor.pk if actor is not None else None,
        actor_label=actor_label[:254],
        server_host=settings.KREO_INSTANCE_ID[:128],
        status_code=status_code,
        target_type=str(target_type)[:64],
        target_id=str(target_id)[:64],
        release=settings.KREO_RELEASE[:64],
        commit=settings.KREO_COMMIT[:64],
        error_code=str(error_code)[:64],
        error_description=str(error_description)[:512],
        correlation_id=(correlation_id or get_correlation_id())[:64],
        details=chain.normalise_details(details),
    )
    if request is not None:
        for name, value in _source(request).items():
            setattr(event, name, value)
    chain.sign_event(event, *keys.event_key_current())
    _write(event)
    if replaces_request_event:
        note_recorded()
    return event


def _request_actor(request: HttpRequest):
    """The request's signed-in user; None when the session store is out too."""
    user = getattr(request, "user", None)
    try:
        return user if user is not None and user.is_authenticated else None
    except (OperationalError, InterfaceError):
        return None


def _write(event: AuditEvent) -> None:
    """Buffer the event (group commit), or insert it now."""
    if buffer.wanted():
        buffer.add(event)
    else:
        write_now(event)


def write_now(event: AuditEvent) -> None:
    """Insert the event, or spool it while the database is unreachable.

    Inside a transaction the error propagates: what the event records is
    rolled back with it (and the request's own failure event is spooled).
    """
    try:
        if _commit_without_waiting():
            # An event of its own (no business transaction around it): its
            # commit does not wait for the WAL flush. PostgreSQL's WAL writer
            # flushes it within 3 x wal_writer_delay (600 ms by default), in
            # order, so a database crash can lose at most that last moment of
            # such events, never an event a later seal covers (a seal's own
            # commit is synchronous, and flushing it flushes all WAL before).
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit TO OFF")
                event.save(force_insert=True)
        else:
            event.save(force_insert=True)
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        event.spooled = True
        chain.sign_event(event, *keys.event_key_current())
        if not spool.spool_append(event):
            raise


def _commit_without_waiting() -> bool:
    """Whether this event commits alone and may skip the fsync wait
    (``AUDIT_ASYNC_COMMIT``, PostgreSQL). Inside a transaction the event
    commits with what it records, synchronously."""
    return (
        settings.AUDIT_ASYNC_COMMIT
        and connection.vendor == "postgresql"
        and not connection.in_atomic_block
    )


def lock_sealer() -> None:
    """One sealer (or spool drain) at a time; request paths never take this lock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('kreo.audit.seal'))")


SEAL_FIELDS = (
    "id",
    *chain.CONTENT_FIELDS,
    "content_hash",
    "spooled",
    "event_uid",
    "mac_key_id",
    "mac",
)
REJECTED_LOG = (
    "audit: event %s (%s at %s) REJECTED by seal %s, not sealed as genuine: %s"
)


def _check_macs(rows: list[dict], keyed: bool) -> tuple[list[tuple[int, str]], bool]:
    """(id, reason) of each row that fails its MAC, and whether the trail is
    keyed after these rows: from the first keyed event on, every event must
    carry a valid MAC; before it, events are legacy (written before keying).
    """
    ring = keys.event_keys()
    rejected = []
    for row in rows:
        if chain.is_keyed(row):
            keyed = True
            body = chain.canonical(row)
            reason = chain.mac_problem(row, ring, body)
            # The seal binds the stored hash: it must be that of the MACed bytes.
            if not reason and hashlib.sha256(body).hexdigest() != row["content_hash"]:
                reason = chain.BAD_HASH
        else:
            reason = chain.NO_MAC if keyed else None
        if reason:
            rejected.append((row["id"], reason))
    return rejected, keyed


def audit_seal(*, batch_size: int | None = None, max_batches: int = 1000) -> int:
    """Fold unsealed events, in id order, into signed seals; return events sealed.

    Only events older than ``AUDIT_SEAL_DELAY_SECONDS`` are sealed, and the
    batch stops at the first younger one, so that a transaction still in
    flight (whose id is lower but not yet visible) is not skipped over.

    Every event's MAC is checked first (``AUDIT_EVENT_KEY``). One that fails
    keeps its place in the chain but is listed in the seal's signed
    ``rejected`` ids, never sealed as genuine; each is logged CRITICAL,
    recorded as an ``audit.seal.rejected`` error event and mailed to the
    Auditor group.
    """
    batch_size = batch_size or settings.AUDIT_SEAL_BATCH
    private = keys.signing_key()
    raw_public = keys.public_key_bytes(private.public_key())
    key_id = keys.key_id(raw_public)
    sealed = 0
    refused: list[tuple[dict, str, int]] = []
    try:
        for _ in range(max_batches):
            count, more = _seal_batch(private, key_id, batch_size, refused)
            sealed += count
            if not more:
                break
    finally:
        if refused:
            _rejected_alert(refused)
    return sealed


def _seal_batch(private, key_id: str, batch_size: int, refused: list) -> tuple:
    """Seal one batch; return (events sealed, whether a full batch was read)."""
    with transaction.atomic():
        lock_sealer()
        last = AuditSeal.objects.order_by("-seq").first()
        after = last.last_id if last else 0
        cutoff = timezone.now() - timezone.timedelta(
            seconds=settings.AUDIT_SEAL_DELAY_SECONDS
        )
        rows = list(
            AuditEvent.objects.filter(id__gt=after)
            .order_by("id")
            .values(*SEAL_FIELDS)[:batch_size]
        )
        ready = []
        for row in rows:
            if row["occurred_at"] > cutoff:
                break
            ready.append(row)
        if not ready:
            return 0, False
        rejected, keyed = _check_macs(ready, bool(last and last.keyed))
        digests = chain.pack_digests((r["id"], r["content_hash"]) for r in ready)
        prev_head = last.head if last else chain.GENESIS
        seal = AuditSeal(
            seq=(last.seq + 1) if last else 1,
            first_id=after + 1,
            last_id=ready[-1]["id"],
            count=len(ready),
            first_at=min(r["occurred_at"] for r in ready),
            last_at=max(r["occurred_at"] for r in ready),
            digests=digests,
            prev_head=prev_head,
            head=chain.next_head(prev_head, digests),
            key_id=key_id,
            sealed_at=timezone.now(),
            keyed=keyed,
            rejected=[pk for pk, _ in rejected],
        )
        seal.signature = private.sign(chain.seal_text(seal)).hex()
        seal.save()
    by_id = {r["id"]: r for r in ready}
    refused += [(by_id[pk], reason, seal.seq) for pk, reason in rejected]
    return len(ready), len(ready) == batch_size


def _rejected_alert(refused: list[tuple[dict, str, int]]) -> None:
    """Raise the alarm over events whose MAC failed (after the seal committed)."""
    from audit.watch import mail_auditors

    lines = []
    for row, reason, seq in refused:
        logger.critical(
            REJECTED_LOG, row["id"], row["event_type"], row["occurred_at"], seq, reason
        )
        lines.append(
            f"event {row['id']} ({row['event_type']} at {row['occurred_at']}), "
            f"seal {seq}: {reason}"
        )
    audit_record(
        event_type="audit.seal.rejected",
        actor_label="audit sealer",
        outcome=Outcome.ERROR,
        error_code="mac",
        error_description=lines[0][:512],
        details={"rejected": [row["id"] for row, _, _ in refused][:1000]},
    )
    mail_auditors(
        f"Kreo audit trail: {len(refused)} event(s) REJECTED by the sealer",
        "These events fail their MAC (AUDIT_EVENT_KEY): they were written "
        "without the application's event key, or altered, and are not sealed "
        "as genuine. Keep the database as it is and investigate.\n\n"
        + "\n".join(lines[:50]),
    )


def seal_latest() -> AuditSeal | None:
    return AuditSeal.objects.order_by("-seq").first()


EXPORT_DENIED = "Exporting audit events needs the audit export permission."
REVIEW_NOT_AUDITOR = "Only auditors sign off log reviews."
REVIEW_ALREADY_SIGNED = "This review was signed off already."
REVIEW_NEEDS_COMMENT = "A sign-off needs a comment."
REVIEW_OWN_EVENTS = (
    "This period holds {count} notable event(s) of your own: another auditor "
    "should sign it off, or say why you sign it yourself."
)


def audit_view_record(
    *, request: HttpRequest, kind: str, filters: dict | None = None, object_id=""
) -> AuditEvent:
    """Record that someone looked at audit data (the trail watches its readers)."""
    return audit_record(
        event_type="audit.view",
        request=request,
        target_type=f"audit.{kind}",
        target_id=str(object_id),
        details={"filters": filters or {}} if filters is not None else {},
    )


def audit_export_record(
    *,
    fmt: str,
    count: int,
    filters: dict,
    request: HttpRequest | None = None,
    actor=None,
    actor_label: str = "",
) -> AuditEvent:
    return audit_record(
        event_type="audit.export",
        actor=actor,
        actor_label=actor_label,
        request=request,
        details={"format": fmt, "count": count, "filters": filters},
    )


@transaction.atomic
def review_create(*, until=None, actor_label: str = "system") -> AuditReview | None:
    """Open the review of the period since the last one (or of the last period).

    Returns None when the current period has not ended yet.
    """
    from audit.selectors import notable_events, review_latest

    now = timezone.now()
    until = until or now
    latest = review_latest()
    period = timezone.timedelta(days=settings.AUDIT_REVIEW_DAYS)
    since = latest.period_end if latest else until - period
    if latest and until - since < period:
        return None
    notable = notable_events(since=since, until=until)
    summary: dict[str, int] = {}
    for event_type, outcome in notable.values_list("event_type", "outcome"):
        key = f"{event_type} {outcome}"
        summary[key] = summary.get(key, 0) + 1
    review = AuditReview.objects.create(
        period_start=since,
        period_end=until,
        notable_count=sum(summary.values()),
        summary=summary,
    )
    audit_record(
        event_type="audit.review.open",
        actor_label=actor_label,
        target=review,
        details={"notable": review.notable_count},
    )
    return review


class ReviewError(ValueError):
    pass


@transaction.atomic
def review_sign_off(
    *,
    review_id: int,
    actor,
    comment: str,
    own_events_reason: str = "",
    request: HttpRequest | None = None,
):
    """Sign a review off as ``actor`` with ``comment``; the sign-off is audited.

    A period that holds notable events of the signer's own (their audit views
    and exports, role changes) is signed by another auditor, or by the signer
    with ``own_events_reason`` stating why (a one-auditor company), recorded
    on the review and in the sign-off event.
    """
    from audit.selectors import is_auditor, review_own_events

    review = AuditReview.objects.select_for_update().get(pk=review_id)
    if not is_auditor(actor):
        raise ReviewError(REVIEW_NOT_AUDITOR)
    if review.signed_off:
        raise ReviewError(REVIEW_ALREADY_SIGNED)
    if not comment.strip():
        raise ReviewError(REVIEW_NEEDS_COMMENT)
    own = review_own_events(review=review, user=actor).count()
    if own and not own_events_reason.strip():
        raise ReviewError(REVIEW_OWN_EVENTS.format(count=own))
    review.own_events_reason = own_events_reason.strip() if own else ""
    review.signed_off_by = actor
    review.signed_off_label = actor.email
    review.signed_off_at = timezone.now()
    review.comment = comment.strip()
    review.save()
    audit_record(
        event_type="audit.review.signoff",
        actor=actor,
        request=request,
        target=review,
        details={
            "period_start": review.period_start.isoformat(),
            "period_end": review.period_end.isoformat(),
            "notable": review.notable_count,
            "comment": review.comment[:500],
            "own_events": own,
            "own_events_reason": review.own_events_reason[:500],
        },
    )
    return review


def audit_archive_run(*, actor_label: str = "system", now=None, progress=None) -> dict:
    """Seal what is ready, then archive and purge events past retention.

    A failure is recorded as an ``audit.archive`` error event and re-raised;
    whatever was not purged stays in the hot store for the next run.
    """
    from audit import archive

    audit_seal()
    try:
        summary = archive.run(now=now, progress=progress)
    except Exception as exc:
        audit_record(
            event_type="audit.archive",
            actor_label=actor_label,
            outcome=Outcome.ERROR,
            error_code=type(exc).__name__,
            error_description=str(exc)[:512],
        )
        raise
    audit_record(event_type="audit.archive", actor_label=actor_label, details=summary)
    return summary
