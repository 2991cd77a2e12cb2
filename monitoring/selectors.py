"""Reads of the monitoring app."""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from kreo.permissions import ADMIN_GROUP
from monitoring.models import ACTIVE_STATES, Alert, IPRule


def alert_get(*, alert_id: int) -> Alert | None:
    return Alert.objects.filter(pk=alert_id).first()


def alert_counts() -> list[tuple[str, str, int]]:
    """(rule, state, number of alerts) for every rule and state with any."""
    return [
        (row["rule"], row["state"], row["n"])
        for row in Alert.objects.order_by()
        .values("rule", "state")
        .annotate(n=Count("id"))
        .order_by("rule", "state")
    ]


def admin_group_emails() -> list[str]:
    """Addresses of the active staff in the Admin group."""
    return sorted(
        get_user_model()
        .objects.filter(groups__name=ADMIN_GROUP, is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
        .distinct()
    )


def ip_rules_in_force(*, since: datetime | None = None) -> list[tuple]:
    """``(id, kind, network, expires_at)`` of every entry not expired before
    ``since`` (default: now)."""
    return list(
        IPRule.objects.filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=since or timezone.now())
        ).values_list("id", "kind", "network", "expires_at")
    )


def alerts_between(*, start: datetime, end: datetime) -> list[Alert]:
    """Alerts open at any moment of ``[start, end)``: raised before its end and
    not resolved before its start, oldest first."""
    return list(
        Alert.objects.filter(first_seen__lt=end)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=start))
        .order_by("first_seen", "id")
    )


def alert_counts_per_day(*, since: datetime, until: datetime) -> tuple[dict, dict]:
    """Alerts opened (first seen) and closed (resolved) on each day from
    ``since`` to before ``until``: two dicts date -> count; a day with none
    is absent."""
    tz = timezone.get_current_timezone()
    found = []
    for field in ("first_seen", "resolved_at"):
        rows = (
            Alert.objects.filter(**{f"{field}__gte": since, f"{field}__lt": until})
            .annotate(day=TruncDate(field, tzinfo=tz))
            .order_by()
            .values("day")
            .annotate(n=Count("id"))
        )
        found.append({row["day"]: row["n"] for row in rows})
    return found[0], found[1]


def alerts_unresolved() -> list[Alert]:
    """Every alert not resolved yet (open or acknowledged), oldest first."""
    return list(Alert.objects.filter(state__in=ACTIVE_STATES).order_by("first_seen"))
