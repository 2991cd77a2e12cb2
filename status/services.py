"""Writes of the status app: samples and states, incidents and their updates."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from audit.services import audit_record
from status import probes
from status.models import (
    Component,
    ComponentState,
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


def maintenance_saved(*, actor, maintenance: Maintenance, request=None) -> None:
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
