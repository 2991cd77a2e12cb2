"""Backup sets: create, verify, restore, drill, prune, retry the offsite copy.

A set is long work across processes (pg_dump, S3), so a service here is not
one transaction: each state change is saved as it happens, and a set becomes
``good`` only in its last step. A worker killed half-way leaves a ``running``
set, whose heartbeat stops: the minute sweep (or the next run) marks it
failed, removes its files and queues a new set.

The services live in one module each and are re-exported here, so callers
keep ``from backups import services``.
"""

from backups import offsite
from backups.manifest import MANIFEST, NO_SUCH_COPY, manifest_json, read_manifest
from backups.services.catalogue import backup_catalogue_rescan
from backups.services.common import (
    ARTIFACT_MISMATCH,
    BUSY,
    DATA_2,
    DB_ARTIFACT,
    FILES_1,
    FILES_2,
    Progress,
    set_folder,
)
from backups.services.create import (
    FILES_CHANGED,
    INTERRUPTED,
    NO_BUCKET,
    OFFSITE_FAILED,
    WORKER_STOPPED,
    _write,
    backup_cleanup_interrupted,
    backup_create,
    backup_offsite_retry,
    backup_sweep_stale,
)
from backups.services.drill import (
    DRILL_MAIL_SUBJECT,
    NOTHING_TO_DRILL,
    backup_drill,
    compare_with_manifest,
)
from backups.services.restore import (
    RESTORE_LEDGER_STALE,
    RESTORE_NEEDS_LEDGER,
    RESTORE_WRONG_REGION,
    backup_restore,
)
from backups.services.retention import backup_age_hours, backup_prune, retention_keep
from backups.services.verify import backup_verify

__all__ = [
    "ARTIFACT_MISMATCH",
    "BUSY",
    "DATA_2",
    "DB_ARTIFACT",
    "DRILL_MAIL_SUBJECT",
    "FILES_1",
    "FILES_2",
    "FILES_CHANGED",
    "INTERRUPTED",
    "MANIFEST",
    "NO_BUCKET",
    "NO_SUCH_COPY",
    "NOTHING_TO_DRILL",
    "RESTORE_LEDGER_STALE",
    "RESTORE_NEEDS_LEDGER",
    "RESTORE_WRONG_REGION",
    "OFFSITE_FAILED",
    "WORKER_STOPPED",
    "Progress",
    "_write",
    "backup_age_hours",
    "backup_catalogue_rescan",
    "backup_cleanup_interrupted",
    "backup_create",
    "backup_drill",
    "backup_offsite_retry",
    "backup_prune",
    "backup_restore",
    "backup_sweep_stale",
    "backup_verify",
    "compare_with_manifest",
    "manifest_json",
    "offsite",
    "read_manifest",
    "retention_keep",
    "set_folder",
]
