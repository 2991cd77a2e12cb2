"""Reads of the audit trail: filters, notable events, access checks."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit.models import (
    ArchiveState,
    AuditArchive,
    AuditEvent,
    AuditReview,
    AuditSeal,
    FieldChange,
    Outcome,
)
from kreo.permissions import GlobalRole, has_global_role

# Event types a review lists whatever their outcome: role and permission
# changes, admin writes, lockouts, errors, the trail's own operations, and
# alerts (raised, acknowledged, resolved; a webhook that gave up).
NOTABLE_TYPE_PREFIXES = (
    "auth.lockout",
    "auth.2fa",
    "auth.passkey.added",
    "auth.passkey.removed",
    "auth.passkey.rejected",
    "auth.permission",
    "auth.role",
    "project.member",
    "project.invite",
    "admin.change",
    "system.",
    "audit.archive",
    "audit.verify",
    # Looking at or exporting the trail is itself reviewed (issue #13).
    "audit.view",
    "audit.export",
    "audit.keys",
    "monitoring.",
)


def is_auditor(user) -> bool:
    """Only superusers and members of the Auditor group see audit events."""
    return has_global_role(user, GlobalRole.AUDITOR)


def event_filter(
    queryset: QuerySet | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    user: str = "",
    event_type: str = "",
    outcome: str = "",
    ip: str = "",
) -> QuerySet:
    """Events matching every given filter, in id order.

    ``user`` matches the actor's id or label; ``event_type`` ending in ``.``
    or ``*`` matches a namespace prefix.
    """
    qs = AuditEvent.objects.all() if queryset is None else queryset
    if since:
        qs = qs.filter(occurred_at__gte=since)
    if until:
        qs = qs.filter(occurred_at__lt=until)
    if user:
        cond = Q(actor_label__iexact=user)
        if user.isdigit():
            cond |= Q(actor_id=int(user))
        qs = qs.filter(cond)
    if event_type:
        if event_type.endswith(("*", ".")):
            qs = qs.filter(event_type__startswith=event_type.rstrip("*"))
        else:
            qs = qs.filter(event_type=event_type)
    if outcome:
        qs = qs.filter(outcome=outcome)
    if ip:
        qs = qs.filter(source_ip=ip)
    return qs.order_by("id")


def notable_q() -> Q:
    cond = Q(outcome__in=[Outcome.FAILURE, Outcome.DENIED, Outcome.ERROR])
    for prefix in NOTABLE_TYPE_PREFIXES:
        cond |= Q(event_type__startswith=prefix)
    return cond


def notable_events(*, since: datetime, until: datetime) -> QuerySet:
    return AuditEvent.objects.filter(
        notable_q(), occurred_at__gte=since, occurred_at__lt=until
    ).order_by("id")


def review_own_events(*, review: AuditReview, user) -> QuerySet:
    """The notable events of ``review``'s period that ``user`` was the actor of:
    a signer reviewing their own activity needs a stated reason."""
    return notable_events(since=review.period_start, until=review.period_end).filter(
        actor_id=user.pk
    )


def review_latest() -> AuditReview | None:
    return AuditReview.objects.order_by("-period_end").first()


def review_pending() -> QuerySet:
    return AuditReview.objects.filter(signed_off_at__isnull=True).order_by("period_end")


def verification_latest() -> AuditEvent | None:
    """The last recorded verification of the trail (``audit.verify``)."""
    return AuditEvent.objects.filter(event_type="audit.verify").order_by("-id").first()


# The columns a reader of the stream gets, in this order (one tuple an event).
STREAM_FIELDS = (
    "id",
    "occurred_at",
    "event_type",
    "outcome",
    "actor_id",
    "actor_label",
    "source_ip",
    "target_type",
    "target_id",
    "path",
    "error_code",
    "details",
    "correlation_id",
)


def events_after(*, after_id: int, limit: int, settle_seconds: float = 0) -> list:
    """Up to ``limit`` events with an id above ``after_id``, in id order, as
    tuples of ``STREAM_FIELDS``.

    The list stops at the first event younger than ``settle_seconds``: a
    transaction still in flight may hold a lower id that is not visible yet,
    and a reader that moved past it would never see it (as ``audit_seal``).
    """
    rows = list(
        AuditEvent.objects.filter(id__gt=after_id)
        .order_by("id")
        .values_list(*STREAM_FIELDS)[:limit]
    )
    if settle_seconds <= 0:
        return rows
    cutoff = timezone.now() - timedelta(seconds=settle_seconds)
    for n, row in enumerate(rows):
        if row[1] > cutoff:
            return rows[:n]
    return rows


def event_id_before(moment: datetime) -> int:
    """The highest id of the events that happened before ``moment`` (0 if none)."""
    last = (
        AuditEvent.objects.filter(occurred_at__lt=moment)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return last or 0


def events_recent(
    *, event_types: Iterable[str], since: datetime, up_to_id: int
) -> list:
    """Events of these types since ``since`` with an id up to ``up_to_id``, in
    id order, as tuples of ``STREAM_FIELDS`` (what a reader saw already)."""
    return list(
        AuditEvent.objects.filter(
            event_type__in=list(event_types), occurred_at__gte=since, id__lte=up_to_id
        )
        .order_by("id")
        .values_list(*STREAM_FIELDS)
    )


def user_field_changes(*, correlation_ids: Iterable[str]) -> dict[str, list]:
    """Field changes of user accounts (django-auditlog) made by the requests
    with these correlation ids: id -> [(user pk, {field: [old, new]}), ...]."""
    ids = [cid for cid in set(correlation_ids) if cid]
    found: dict[str, list] = {}
    if not ids:
        return found
    rows = FieldChange.objects.filter(
        cid__in=ids,
        content_type__app_label="accounts",
        content_type__model="user",
    ).values_list("cid", "object_pk", "changes")
    for cid, pk, changes in rows:
        found.setdefault(cid, []).append((pk, changes or {}))
    return found


def reviews_between(*, start: datetime, end: datetime) -> QuerySet:
    """Reviews whose period ends in ``[start, end)``, oldest first, with their
    sign-off (or none yet)."""
    return AuditReview.objects.filter(
        period_end__gte=start, period_end__lt=end
    ).order_by("period_end")


# Events that change who holds a role: SSO role sync, admin writes to a user,
# and field changes of user accounts (staff, superuser flags).
ROLE_CHANGE_TYPES = ("auth.sso.roles", "auth.role", "auth.permission")


def role_change_events(*, start: datetime, end: datetime) -> QuerySet:
    """Events in ``[start, end)`` that granted or removed a role or group."""
    cond = Q(event_type__in=ROLE_CHANGE_TYPES) | Q(event_type__startswith="auth.role.")
    cond |= Q(event_type="admin.change", path__startswith="/admin/accounts/user/")
    # A new account is a role change only when made staff or superuser.
    cond |= Q(event_type="record.update", target_type="accounts.user") & (
        Q(details__changes__has_key="is_staff")
        | Q(details__changes__has_key="is_superuser")
        | Q(details__changes__has_key="groups")
    )
    cond |= Q(event_type="record.create", target_type="accounts.user") & (
        Q(details__changes__is_staff__1="True")
        | Q(details__changes__is_superuser__1="True")
    )
    return AuditEvent.objects.filter(
        cond, occurred_at__gte=start, occurred_at__lt=end
    ).order_by("id")


def event_counts_per_day(
    *, event_types: Iterable[str], since: datetime, until: datetime
) -> dict:
    """How many events of these types happened on each day (the current time
    zone's dates) from ``since`` to before ``until``: date -> count; a day
    with none is absent."""
    rows = (
        AuditEvent.objects.filter(
            event_type__in=list(event_types),
            occurred_at__gte=since,
            occurred_at__lt=until,
        )
        .annotate(day=TruncDate("occurred_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
    )
    return {row["day"]: row["n"] for row in rows}


def event_latest(*, event_type: str) -> AuditEvent | None:
    """The most recent event of ``event_type``."""
    return AuditEvent.objects.filter(event_type=event_type).order_by("-id").first()


def seal_latest() -> AuditSeal | None:
    return AuditSeal.objects.order_by("-seq").first()


def event_oldest() -> AuditEvent | None:
    """The oldest event still in the hot store (archived ones are purged)."""
    return AuditEvent.objects.order_by("id").only("id", "occurred_at").first()


def archive_summary() -> dict:
    """The archives by state, the oldest not yet verified, the newest archived."""
    counts = {state: 0 for state in ArchiveState.values}
    for state in AuditArchive.objects.values_list("state", flat=True):
        counts[state] += 1
    unfinished = (
        AuditArchive.objects.filter(
            state__in=[ArchiveState.PENDING, ArchiveState.UPLOADED]
        )
        .order_by("created_at")
        .first()
    )
    newest = AuditArchive.objects.order_by("-last_id").first()
    return {
        "by_state": counts,
        "oldest_unfinished": unfinished,
        "newest": newest,
    }
