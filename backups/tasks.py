"""Scheduled backup jobs; the schedule itself is in kreo.celery.DEFAULT_SCHEDULE.

The jobs that must not be lost are ``acks_late`` with
``reject_on_worker_lost``: a worker killed mid-task does not acknowledge it,
so the broker delivers it again. Each is safe to run twice: a backup task
that finds the set it already took returns it, and one backup runs at a time
(``backups.services.common._exclusive``).
"""

import logging
from datetime import UTC, datetime

from celery import shared_task
from django.conf import settings

from backups import services
from backups.models import BackupSet, SetState, Trigger
from backups.services.common import BUSY

logger = logging.getLogger(__name__)

MUST_NOT_BE_LOST = {"acks_late": True, "reject_on_worker_lost": True}


def _take(task, *, trigger: str, actor=None) -> int:
    """Take a set for this task once: a redelivered task returns the set it took.

    If that set failed (its worker died), a new one is taken only when no set
    was started after it (the sweep's retry may already have taken one).
    """
    task_id = task.request.id or ""
    if task_id:
        earlier = BackupSet.objects.filter(task_id=task_id).order_by("-pk").first()
        if earlier and (
            earlier.state != SetState.FAILED
            or BackupSet.objects.filter(pk__gt=earlier.pk).exists()
        ):
            logger.warning(
                "backup task %s delivered again: set %s already taken (%s)",
                task_id,
                earlier.pk,
                earlier.state,
            )
            return earlier.pk
    return services.backup_create(actor=actor, trigger=trigger, task_id=task_id).pk


@shared_task(name="backups.tasks.backup_scheduled", bind=True, **MUST_NOT_BE_LOST)
def backup_scheduled(self) -> int:
    """Take the daily set; an S3 outage leaves it incomplete for the retry task."""
    return _take(self, trigger=Trigger.SCHEDULE)


@shared_task(name="backups.tasks.backup_offsite_retry", **MUST_NOT_BE_LOST)
def backup_offsite_retry() -> list[int]:
    """Upload copy 3 of incomplete sets (again: uploads are checked by SHA-256)."""
    return [item.pk for item in services.backup_offsite_retry()]


@shared_task(name="backups.tasks.backup_prune", **MUST_NOT_BE_LOST)
def backup_prune() -> list[int]:
    return services.backup_prune()


@shared_task(name="backups.tasks.backup_drill", **MUST_NOT_BE_LOST)
def backup_drill() -> bool:
    return bool(services.backup_drill().ok)


# A "back up now" that finds another backup running asks again after this
# many heartbeats, for up to 6 hours.
BUSY_RETRY_HEARTBEATS = 1
BUSY_RETRY_HOURS = 6


def _covering(requested_at: float | None) -> BackupSet | None:
    """A set started at or after ``requested_at`` (not failed): it holds
    everything there was when "back up now" was pressed."""
    if requested_at is None:
        return None
    since = datetime.fromtimestamp(requested_at, tz=UTC)
    return (
        BackupSet.objects.filter(created_at__gte=since)
        .exclude(state=SetState.FAILED)
        .order_by("pk")
        .first()
    )


@shared_task(name="backups.tasks.backup_manual", bind=True, **MUST_NOT_BE_LOST)
def backup_manual(
    self, *, actor_id: int | None = None, requested_at: float | None = None
) -> int:
    """The admin's "back up now", pressed at ``requested_at`` (a timestamp).

    Presses at once (on two instances, or twice) make one set: a set started
    after the press covers it, whichever trigger started it. One that finds
    another backup running waits for it (a retry every heartbeat) and is then
    covered by it, or takes the next set if that one had started before.
    """
    from django.contrib.auth import get_user_model

    covering = _covering(requested_at)
    if covering is not None:
        logger.warning(
            "back up now (task %s): set %s, started after it was pressed, covers it",
            self.request.id,
            covering.pk,
        )
        return covering.pk
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    try:
        return _take(self, trigger=Trigger.MANUAL, actor=actor)
    except RuntimeError as exc:
        if str(exc) != BUSY or requested_at is None:
            raise
        every = BUSY_RETRY_HEARTBEATS * settings.KREO_TASK_HEARTBEAT_SECONDS
        raise self.retry(
            countdown=every, max_retries=BUSY_RETRY_HOURS * 3600 // every
        ) from exc


@shared_task(name="backups.tasks.backup_retry", bind=True, **MUST_NOT_BE_LOST)
def backup_retry(self, *, failed_id: int) -> int | None:
    """A new set in place of ``failed_id``, whose worker died.

    Skipped when a set was started after it (another retry, the daily run).
    """
    if (
        BackupSet.objects.filter(pk__gt=failed_id)
        .exclude(task_id=self.request.id or "-")
        .exists()
    ):
        return None
    failed = BackupSet.objects.filter(pk=failed_id).first()
    trigger = failed.trigger if failed else Trigger.SCHEDULE
    return _take(self, trigger=trigger, actor=failed.actor if failed else None)


@shared_task(name="backups.tasks.backup_sweep")
def backup_sweep() -> list[int]:
    """Every minute: fail, clean and retry the sets whose worker died."""
    dead = services.backup_sweep_stale()
    for set_id in dead:
        backup_retry.delay(failed_id=set_id)
    if dead:
        logger.warning("backup sets %s failed (worker stopped); retry queued", dead)
    return dead
