"""Rows the compliance tests seed, shared by their modules."""

from backups.models import BackupCopy, BackupSet, SetState


def backup_set(at, states=("done", "done", "done"), s3=True) -> BackupSet:
    """A good backup set finished at ``at``: copies 1 and 2 on local disks,
    copy 3 in S3 (or on a third disk with ``s3=False``)."""
    backup = BackupSet.objects.create(
        created_at=at, finished_at=at, state=SetState.GOOD
    )
    for number, state in enumerate(states, start=1):
        where = f"/srv/copy{number}/{backup.pk}"
        if number == 3 and s3:
            where = f"s3://kreo-backups/kreo-backups/{backup.pk}/"
        BackupCopy.objects.create(
            backup_set=backup, number=number, state=state, location=where
        )
    return backup
