"""Reads of the audit trail: filters, notable events, access checks."""

from datetime import datetime

from django.db.models import Q, QuerySet

from audit.models import AuditEvent, AuditReview, Outcome
from kreo.permissions import GlobalRole, has_global_role

# Event types a review lists whatever their outcome: role and permission
# changes, admin writes, lockouts, errors, and the trail's own operations.
NOTABLE_TYPE_PREFIXES = (
    "auth.lockout",
    "auth.2fa",
    "auth.permission",
    "auth.role",
    "project.member",
    "project.invite",
    "admin.change",
    "system.",
    "audit.archive",
    "audit.verify",
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


def review_latest() -> AuditReview | None:
    return AuditReview.objects.order_by("-period_end").first()


def review_pending() -> QuerySet:
    return AuditReview.objects.filter(signed_off_at__isnull=True).order_by("period_end")


def verification_latest() -> AuditEvent | None:
    """The last recorded verification of the trail (``audit.verify``)."""
    return AuditEvent.objects.filter(event_type="audit.verify").order_by("-id").first()
