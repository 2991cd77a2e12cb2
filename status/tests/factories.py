from datetime import timedelta

from django.utils import timezone

from status import services
from status.models import Impact, Incident, IncidentStatus, Maintenance


def incident(*, title="Uploads fail", impact=Impact.MAJOR, components=(), updates=()):
    """An incident with updates posted through the service (as the admin does)."""
    item = Incident.objects.create(title=title, impact=impact)
    item.components.set(components)
    for status, body in updates or [(IncidentStatus.INVESTIGATING, "Looking.")]:
        services.incident_update_create(
            actor=None, incident=item, status=status, body=body
        )
    item.refresh_from_db()
    return item


def maintenance(*, components=(), starts=None, hours=1, title="Database upgrade"):
    starts = starts or timezone.now() - timedelta(minutes=30)
    window = Maintenance.objects.create(
        title=title, starts_at=starts, ends_at=starts + timedelta(hours=hours)
    )
    window.components.set(components)
    return window
