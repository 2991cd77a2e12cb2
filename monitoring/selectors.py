"""Reads of the monitoring app."""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import Count, Q
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


def alerts_unresolved() -> list[Alert]:
    """Every alert not resolved yet (open or acknowledged), oldest first."""
    return list(Alert.objects.filter(state__in=ACTIVE_STATES).order_by("first_seen"))
