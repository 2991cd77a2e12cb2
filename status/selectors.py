"""Reads of the status app: components, 90-day uptime, incidents, maintenance."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.utils import timezone

from status.models import (
    SEVERITY,
    Component,
    ComponentState,
    Impact,
    Incident,
    IncidentStatus,
    Maintenance,
)

DAYS = 90
HISTORY_PER_PAGE = 10

# Statuspage's overall indicator and its descriptions.
INDICATOR_TEXT = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
INDICATOR_RANK = {"none": 0, "minor": 1, "major": 2, "critical": 3}
STATE_INDICATOR = {
    ComponentState.OPERATIONAL: "none",
    ComponentState.MAINTENANCE: "none",
    ComponentState.DEGRADED: "minor",
    ComponentState.PARTIAL: "major",
    ComponentState.MAJOR: "critical",
}
MAINTENANCE_TEXT = "Service Under Maintenance"
# An incident's impact as a day's colour, where the probes saw less.
IMPACT_STATE = {
    Impact.MINOR: ComponentState.DEGRADED,
    Impact.MAJOR: ComponentState.PARTIAL,
    Impact.CRITICAL: ComponentState.MAJOR,
}


@dataclass
class Day:
    day: date
    total: int = 0
    up: int = 0
    worst: str = ""
    maintenance: bool = False
    incidents: list = field(default_factory=list)
    index: int = 0

    @property
    def x(self) -> int:
        """Left edge of the day's bar in the 448-wide SVG (3 wide, 2 apart)."""
        return self.index * 5

    @property
    def uptime(self) -> float | None:
        return round(100 * self.up / self.total, 2) if self.total else None

    @property
    def css(self) -> str:
        """The day's colour: the worst of its probes and of its incidents."""
        if not self.total and not self.incidents:
            return "nodata"
        worst = self.worst or ComponentState.OPERATIONAL
        for _, impact in self.incidents:
            state = IMPACT_STATE.get(impact, ComponentState.OPERATIONAL)
            if SEVERITY[state] > SEVERITY[worst]:
                worst = state
        return worst

    @property
    def text(self) -> str:
        parts = [self.day.isoformat()]
        if self.uptime is None:
            parts.append("no data")
        else:
            parts.append(f"{self.uptime:.2f}% uptime")
            if self.worst and self.worst != ComponentState.OPERATIONAL:
                parts.append(f"worst: {ComponentState(self.worst).label.lower()}")
        if self.maintenance:
            parts.append("maintenance (not counted)")
        parts.extend(f"incident: {title}" for title, _ in self.incidents)
        return "; ".join(parts)


@dataclass
class ComponentUptime:
    component: Component
    days: list[Day]

    @property
    def percent(self) -> float | None:
        total = sum(d.total for d in self.days)
        up = sum(d.up for d in self.days)
        return round(100 * up / total, 2) if total else None


def component_list() -> QuerySet[Component]:
    return Component.objects.all()


def maintenance_q(component: Component, since: datetime, until: datetime) -> Q:
    """Samples taken inside a maintenance window of ``component``."""
    q = Q(pk__in=[])
    windows = Maintenance.objects.filter(
        components=component, ends_at__gt=since, starts_at__lt=until
    ).values_list("starts_at", "ends_at")
    for starts, ends in windows:
        q |= Q(at__gte=starts, at__lt=ends)
    return q


def uptime(component: Component, *, now: datetime | None = None) -> ComponentUptime:
    """The last 90 UTC days of ``component``: each day's uptime (probes that
    did not fail, maintenance left out: ``DayUptime``), worst state and
    incidents."""
    now = now or timezone.now()
    first = now.astimezone(UTC).date() - timedelta(days=DAYS - 1)
    since = datetime.combine(first, time.min, tzinfo=UTC)
    days = {
        first + timedelta(days=i): Day(first + timedelta(days=i), index=i)
        for i in range(DAYS)
    }
    for row in component.days.filter(day__gte=first):
        day = days.get(row.day)
        if day is not None:
            day.total, day.up, day.worst = row.total, row.up, row.worst
    for starts, ends in Maintenance.objects.filter(
        components=component, ends_at__gt=since, starts_at__lt=now
    ).values_list("starts_at", "ends_at"):
        _mark(days, starts, min(ends, now), "maintenance")
    for incident in component.incident_set.filter(
        Q(resolved_at__isnull=True) | Q(resolved_at__gte=since), created_at__lte=now
    ):
        _mark(
            days,
            incident.created_at,
            incident.resolved_at or now,
            (incident.title, incident.impact),
        )
    return ComponentUptime(component, [days[d] for d in sorted(days)])


def _mark(days: dict, starts: datetime, ends: datetime, what) -> None:
    day = starts.astimezone(UTC).date()
    last = ends.astimezone(UTC).date()
    while day <= last:
        if day in days:
            if what == "maintenance":
                days[day].maintenance = True
            else:
                days[day].incidents.append(what)
        day += timedelta(days=1)


def incidents_unresolved() -> QuerySet[Incident]:
    return (
        Incident.objects.exclude(status=IncidentStatus.RESOLVED)
        .prefetch_related("updates", "components")
        .order_by("-created_at")
    )


def incidents_all() -> QuerySet[Incident]:
    return Incident.objects.prefetch_related("updates", "components").order_by(
        "-created_at"
    )


def incident_history(*, page: int = 1) -> Page:
    """Incidents newest first, ``HISTORY_PER_PAGE`` a page (404 past the end)."""
    return Paginator(
        incidents_all(), HISTORY_PER_PAGE, allow_empty_first_page=True
    ).page(page)


def incident_get(*, public_id: str) -> Incident:
    return incidents_all().get(public_id=public_id)


def maintenance_list(*, now: datetime | None = None) -> QuerySet[Maintenance]:
    """Windows in progress or still to come."""
    now = now or timezone.now()
    return (
        Maintenance.objects.filter(ends_at__gt=now)
        .prefetch_related("components")
        .order_by("starts_at")
    )


def overall(*, now: datetime | None = None) -> dict:
    """Statuspage's ``status``: indicator and description for the banner."""
    indicator = "none"
    for state in component_list().values_list("state", flat=True):
        indicator = max(
            indicator, STATE_INDICATOR.get(state, "none"), key=INDICATOR_RANK.get
        )
    for impact in incidents_unresolved().values_list("impact", flat=True):
        if impact != Impact.NONE:
            indicator = max(indicator, impact, key=INDICATOR_RANK.get)
    description = INDICATOR_TEXT[indicator]
    if (
        indicator == "none"
        and component_list().filter(state=ComponentState.MAINTENANCE).exists()
    ):
        description = MAINTENANCE_TEXT
    return {"indicator": indicator, "description": description}


def page_updated_at() -> datetime:
    """The newest change anywhere on the page."""
    stamps = [
        Component.objects.order_by("-updated_at")
        .values_list("updated_at", flat=True)
        .first(),
        Incident.objects.order_by("-updated_at")
        .values_list("updated_at", flat=True)
        .first(),
        Maintenance.objects.order_by("-created_at")
        .values_list("created_at", flat=True)
        .first(),
    ]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else timezone.now()
