from django.db.models import F
from django.utils import timezone

from kreo.models import Heartbeat


def heartbeat_record(*, component: str) -> Heartbeat:
    """Stamp ``component`` as alive now."""
    now = timezone.now()
    beat, created = Heartbeat.objects.get_or_create(
        component=component, defaults={"beat_at": now, "count": 1}
    )
    if not created:
        Heartbeat.objects.filter(pk=beat.pk).update(beat_at=now, count=F("count") + 1)
        beat.refresh_from_db()
    return beat
