"""Scheduled backup jobs; the schedule itself is in kreo.celery.DEFAULT_SCHEDULE."""

from celery import shared_task

from backups import services
from backups.models import Trigger


@shared_task(name="backups.tasks.backup_scheduled")
def backup_scheduled() -> int:
    """Take the daily set; an S3 outage leaves it incomplete for the retry task."""
    return services.backup_create(trigger=Trigger.SCHEDULE).pk


@shared_task(name="backups.tasks.backup_offsite_retry")
def backup_offsite_retry() -> list[int]:
    return [item.pk for item in services.backup_offsite_retry()]


@shared_task(name="backups.tasks.backup_prune")
def backup_prune() -> list[int]:
    return services.backup_prune()


@shared_task(name="backups.tasks.backup_drill")
def backup_drill() -> bool:
    return bool(services.backup_drill().ok)


@shared_task(name="backups.tasks.backup_manual")
def backup_manual(*, actor_id: int | None = None) -> int:
    """The admin's "back up now"."""
    from django.contrib.auth import get_user_model

    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    return services.backup_create(actor=actor).pk
