"""Seed the editable beat schedule from ``kreo.celery.DEFAULT_SCHEDULE``."""

from django.conf import settings
from django.db import transaction


def sync_default_schedule() -> int:
    """Create missing default periodic tasks; never overwrite staff edits.

    Returns the number of entries created.
    """
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from kreo.celery import DEFAULT_SCHEDULE

    created = 0
    with transaction.atomic():
        for name, (task, every) in DEFAULT_SCHEDULE.items():
            seconds = getattr(settings, every) if isinstance(every, str) else every
            interval, _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            _, was_created = PeriodicTask.objects.get_or_create(
                name=name, defaults={"task": task, "interval": interval}
            )
            created += was_created
    return created
