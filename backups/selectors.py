"""Reads of the backup catalogue."""

from django.db.models import QuerySet

from backups.models import BackupSet, RestoreDrill, SetState


def backup_set_list() -> QuerySet[BackupSet]:
    return BackupSet.objects.prefetch_related("copies").order_by("-created_at", "-id")


def backup_set_get(*, set_id: int) -> BackupSet:
    return backup_set_list().get(pk=set_id)


def backup_set_latest(*, good_only: bool = False) -> BackupSet | None:
    sets = backup_set_list()
    if good_only:
        sets = sets.filter(state=SetState.GOOD)
    return sets.first()


def restore_drill_latest() -> RestoreDrill | None:
    return RestoreDrill.objects.order_by("-started_at", "-id").first()


def backup_sets_between(*, start, end) -> QuerySet[BackupSet]:
    """Sets started in ``[start, end)``, oldest first (the evidence pack)."""
    return (
        backup_set_list()
        .filter(created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
    )


def restore_drills_between(*, start, end) -> QuerySet[RestoreDrill]:
    """Restore drills started in ``[start, end)``, oldest first."""
    return RestoreDrill.objects.filter(
        started_at__gte=start, started_at__lt=end
    ).order_by("started_at", "id")
