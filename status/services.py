"""Writes of the status app: samples and states, incidents and their updates."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from audit.services import audit_record
from status import probes
from status.models import (
    SEVERITY,
    Component,
    ComponentState,
    DayUptime,
    Incident,
    IncidentStatus,
    IncidentUpdate,
    Maintenance,
    ProbeResult,
    Sample,
)

# Hysteresis: how many probes in a row it takes to move a component.
RECOVER_AFTER = 2  # good probes in a row back to operational
DEGRADED_AFTER = 2  # bad probes in a row: degraded performance
PARTIAL_AFTER = 3  # failed probes in a row: partial outage
MAJOR_AFTER = 5  # failed probes in a row: major outage


def components_ensure() -> list[Component]:
    """Create the six components if missing (never renames staff's edits)."""
    for slug, (name, description, position) in probes.COMPONENTS.items():
        Component.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "position": position},
        )
    return list(Component.objects.filter(slug__in=probes.COMPONENTS))


def _streak(results: list[str], accepted: set[str]) -> int:
    count = 0
    for result in results:
        if result not in accepted:
            break
        count += 1
    return count


def state_next(current: str, results: list[str]) -> str:
    """The state after ``results`` (newest first): a single bad probe moves
    nothing; two good ones in a row bring the component back."""
    if _streak(results, {ProbeResult.OK}) >= RECOVER_AFTER:
        return ComponentState.OPERATIONAL
    failed = _streak(results, {ProbeResult.FAIL})
    if failed >= MAJOR_AFTER:
        return ComponentState.MAJOR
    if failed >= PARTIAL_AFTER:
        return ComponentState.PARTIAL
    if _streak(results, {ProbeResult.FAIL, ProbeResult.SLOW}) >= DEGRADED_AFTER:
        return ComponentState.DEGRADED
    return current


def _in_maintenance(component: Component, now) -> bool:
    return Maintenance.objects.filter(
        components=component, starts_at__lte=now, ends_at__gt=now
    ).exists()


def sample_record(*, component: Component, outcome: probes.Outcome, at=None) -> bool:
    """Store one probe result and move the component's state; True if it moved."""
    at = at or timezone.now()
    with transaction.atomic():
        # The write comes first: on SQLite a transaction that read first
        # cannot wait for the write lock ("database is locked" at once when
        # another connection writes); PostgreSQL then locks the row.
        sample = Sample.objects.create(
            component=component,
            at=at,
            result=outcome.result,
            state=component.state,
            latency_ms=outcome.latency_ms,
            detail=outcome.detail,
        )
        component = Component.objects.select_for_update().get(pk=component.pk)
        recent = list(
            component.samples.order_by("-at", "-id").values_list("result", flat=True)[
                :MAJOR_AFTER
            ]
        )
        derived = state_next(
            component.state
            if component.state != ComponentState.MAINTENANCE
            else ComponentState.OPERATIONAL,
            recent,
        )
        state = (
            ComponentState.MAINTENANCE if _in_maintenance(component, at) else derived
        )
        Sample.objects.filter(pk=sample.pk).update(state=derived)
        if state != ComponentState.MAINTENANCE:
            _day_count(component, at, outcome.result, derived)
        moved = state != component.state
        if moved:
            audit_record(
                event_type="status.component.state",
                actor_label="status probe",
                target=component,
                details={
                    "from": component.state,
                    "to": state,
                    "detail": outcome.detail,
                },
            )
            component.state, component.state_since = state, at
            component.updated_at = at
            component.save(update_fields=["state", "state_since", "updated_at"])
    return moved


def _day_count(component: Component, at, result: str, state: str) -> None:
    """Add one sample to its day's totals (the caller holds the component)."""
    day, _ = DayUptime.objects.get_or_create(
        component=component, day=at.astimezone(UTC).date()
    )
    day.total += 1
    day.up += result != ProbeResult.FAIL
    if SEVERITY.get(state, 0) > SEVERITY.get(day.worst, -1):
        day.worst = state
    day.save(update_fields=["total", "up", "worst"])


def uptime_rebuild(*, component: Component, since, until) -> None:
    """Count the UTC days from ``since`` to ``until`` again from the samples
    (after a maintenance window is set or moved, even in the past)."""
    from status.selectors import maintenance_q

    first = since.astimezone(UTC).date()
    last = until.astimezone(UTC).date()
    start = datetime.combine(first, time.min, tzinfo=UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    with transaction.atomic():
        component = Component.objects.select_for_update().get(pk=component.pk)
        DayUptime.objects.filter(
            component=component, day__gte=first, day__lte=last
        ).delete()
        rows = (
            component.samples.filter(at__gte=start, at__lt=end)
            .exclude(maintenance_q(component, start, end))
            .annotate(day=TruncDate("at", tzinfo=UTC))
            .values("day", "result", "state")
            .annotate(n=Count("id"))
        )
        days: dict = {}
        for row in rows:
            day = days.setdefault(
                row["day"], DayUptime(component=component, day=row["day"])
            )
            day.total += row["n"]
            if row["result"] != ProbeResult.FAIL:
                day.up += row["n"]
            if SEVERITY.get(row["state"], 0) > SEVERITY.get(day.worst, -1):
                day.worst = row["state"]
        DayUptime.objects.bulk_create(days.values())


def _probe_one(slug_checks):
    slug, checks = slug_checks
    try:
        return slug, probes.run(checks)
    finally:
        connections.close_all()  # this thread's own connections


def probe_all() -> int:
    """Probe every component (in parallel, each with its own timeout), record
    the samples, and publish the static copy when a state moved. Returns the
    number of components whose state moved."""
    components = {c.slug: c for c in components_ensure()}
    checks = probes.checks()
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        outcomes = dict(pool.map(_probe_one, checks.items()))
    moved = sum(
        sample_record(component=components[slug], outcome=outcome)
        for slug, outcome in outcomes.items()
    )
    cutoff = timezone.now() - timedelta(days=settings.STATUS_SAMPLE_DAYS)
    for component in components.values():  # by component: the (component, at) index
        component.samples.filter(at__lt=cutoff).delete()
    if moved:
        _publish_after_commit()
    return moved


def _publish_after_commit() -> None:
    from status.tasks import publish

    transaction.on_commit(lambda: publish.delay())


def incident_saved(*, actor, incident: Incident, created: bool, request=None) -> None:
    """Audit a staff edit of an incident and republish the page."""
    audit_record(
        event_type="status.incident.created" if created else "status.incident.changed",
        actor=actor,
        request=request,
        target=incident,
        details={"title": incident.title, "impact": incident.impact},
    )
    _publish_after_commit()


@transaction.atomic
def incident_update_create(
    *, actor, incident: Incident, status: str, body: str, request=None
) -> IncidentUpdate:
    """Post an update: the incident takes its status, subscribers hear of it
    once (a task after commit), the static copy is refreshed."""
    now = timezone.now()
    update = IncidentUpdate.objects.create(
        incident=incident, status=status, body=body, created_at=now
    )
    incident.status = status
    incident.updated_at = now
    incident.resolved_at = now if status == IncidentStatus.RESOLVED else None
    incident.save(update_fields=["status", "updated_at", "resolved_at"])
    audit_record(
        event_type="status.incident.update",
        actor=actor,
        request=request,
        target=incident,
        details={"update": update.public_id, "status": status},
    )
    from status.tasks import notify

    transaction.on_commit(lambda: notify.delay(update_id=update.pk))
    _publish_after_commit()
    return update


def maintenance_saved(
    *, actor, maintenance: Maintenance, request=None, previous=None
) -> None:
    """Audit a window, count its days again without it (``previous``: the
    window's former (start, end) if it moved), republish."""
    now = timezone.now()
    since, until = maintenance.starts_at, maintenance.ends_at
    if previous:
        since, until = min(since, previous[0]), max(until, previous[1])
    if since < now:
        for component in Component.objects.all():
            uptime_rebuild(component=component, since=since, until=min(until, now))
    audit_record(
        event_type="status.maintenance.saved",
        actor=actor,
        request=request,
        target=maintenance,
        details={
            "starts_at": maintenance.starts_at.isoformat(),
            "ends_at": maintenance.ends_at.isoformat(),
        },
    )
    _publish_after_commit()


def maintenance_delete(*, actor, maintenance: Maintenance, request=None) -> None:
    """Remove a window: its days count against uptime again."""
    since, until = maintenance.starts_at, maintenance.ends_at
    audit_record(
        event_type="status.maintenance.deleted",
        actor=actor,
        request=request,
        target=maintenance,
        details={"starts_at": since.isoformat(), "ends_at": until.isoformat()},
    )
    maintenance.delete()
    now = timezone.now()
    if since < now:
        for component in Component.objects.all():
            uptime_rebuild(component=component, since=since, until=min(until, now))
    _publish_after_commit()
