"""Rebuild the catalogue from the copies: every set whose MAC'd manifest is
found in a copy folder or in the bucket is listed again.

A restore brings back the catalogue of the day of the backup (or none, into
an empty database): the sets taken since would be forgotten though their
copies exist. Only manifests whose MAC verifies with ``BACKUP_MANIFEST_KEY``
are trusted; anyone who can write to a folder or the bucket could put a
forged one there.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from pathlib import Path

from django.conf import settings
from django.core.management.color import no_style
from django.db import connections, transaction

from audit.services import audit_record
from backups import crypto, offsite
from backups.manifest import MANIFEST, read_manifest, set_folder
from backups.models import BackupCopy, BackupSet, CopyState, SetState
from backups.services.common import Progress, _exclusive, _say
from backups.services.create import NO_BUCKET

logger = logging.getLogger(__name__)

NOT_FOUND = "Not found when the catalogue was rebuilt from the manifests."
UNTRUSTED = "copy {copy} of set {id}: manifest refused ({error})"
BUCKET_UNREADABLE = (
    "Incomplete: the bucket could not be read when the catalogue was rebuilt "
    "({error}); the hourly retry uploads copy 3 again."
)
REBUILT_INCOMPLETE = (
    "Incomplete: rebuilt from the manifests, copy {copies} not found, so the "
    "3-2-1 rule is not met."
)
SET_FOLDER = re.compile(r"^\d{8}$")


def _local_manifests(copy: int, untrusted: list[str]) -> dict[int, dict]:
    root = Path(settings.BACKUP_COPY1_DIR if copy == 1 else settings.BACKUP_COPY2_DIR)
    found: dict[int, dict] = {}
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if not SET_FOLDER.match(folder.name) or not (folder / MANIFEST).is_file():
            continue
        set_id = int(folder.name)
        try:
            manifest = read_manifest(copy, set_id)
        except (OSError, crypto.BackupCryptoError) as exc:
            untrusted.append(UNTRUSTED.format(copy=copy, id=set_id, error=exc))
            continue
        if manifest.get("set_id") != set_id:  # a genuine manifest, moved
            untrusted.append(
                UNTRUSTED.format(copy=copy, id=set_id, error="another set's")
            )
            continue
        found[set_id] = manifest
    return found


def _bucket_manifests(untrusted: list[str]) -> dict[int, tuple[dict, dict]]:
    """{set id: (manifest, versions written)} for every set in the bucket.

    Each object is read at its first version, the one the backup wrote.
    Raises ``OffsiteError`` when the bucket cannot be listed.
    """
    found: dict[int, tuple[dict, dict]] = {}
    if not settings.BACKUP_S3_BUCKET:
        return found
    written: dict[int, dict[str, str]] = {}
    for name, item in offsite.history(settings.BACKUP_S3_PREFIX).items():
        folder, _, leaf = name.partition("/")
        if SET_FOLDER.match(folder) and item["versions"]:
            version = item["versions"][0][0]
            if version != "null":
                written.setdefault(int(folder), {})[leaf] = version
            else:
                written.setdefault(int(folder), {})
    for set_id, versions in sorted(written.items()):
        try:
            manifest = read_manifest(3, set_id, versions.get(MANIFEST))
        except (offsite.OffsiteError, crypto.BackupCryptoError) as exc:
            untrusted.append(UNTRUSTED.format(copy=3, id=set_id, error=exc))
            continue
        if manifest.get("set_id") != set_id:
            untrusted.append(UNTRUSTED.format(copy=3, id=set_id, error="another set's"))
            continue
        found[set_id] = (manifest, versions)
    return found


def _write_set(
    set_id: int,
    manifest: dict,
    present: dict[int, str],
    versions: dict,
    existing: BackupSet | None,
    using: str,
    bucket_error: str = "",
) -> None:
    created = dt.datetime.fromisoformat(manifest["created_at"])
    missing = [n for n in (1, 2, 3) if n not in present]
    if not missing:
        state, error = SetState.GOOD, ""
    elif missing == [3] and not settings.BACKUP_S3_BUCKET:
        state, error = SetState.INCOMPLETE, NO_BUCKET
    else:
        state = SetState.INCOMPLETE
        error = REBUILT_INCOMPLETE.format(copies=", ".join(map(str, missing)))
    if 3 in missing and bucket_error:
        error = BUCKET_UNREADABLE.format(error=bucket_error)
    backup_set = existing or BackupSet(pk=set_id)
    backup_set.created_at = created
    # When it finished is not in the manifest: its start errs on the side of
    # an older last good backup for the age flag.
    backup_set.finished_at = created
    backup_set.engine = manifest["engine"]
    backup_set.manifest = manifest
    backup_set.state = state
    backup_set.error = error
    backup_set.save(using=using)
    for number in (1, 2, 3):
        artifacts = manifest["copies"][str(1 if number == 3 else number)]["artifacts"]
        if number in present:
            copy_state = CopyState.DONE
        elif number == 3 and not settings.BACKUP_S3_BUCKET:
            copy_state = CopyState.SKIPPED  # as a backup without a bucket says
        else:
            copy_state = CopyState.FAILED
        BackupCopy.objects.using(using).update_or_create(
            backup_set=backup_set,
            number=number,
            defaults={
                "state": copy_state,
                "location": present.get(number, ""),
                "size": sum(a["size"] for a in artifacts.values())
                if number in present
                else 0,
                "error": "" if number in present else (error or NOT_FOUND),
                "versions": versions if number == 3 else {},
            },
        )


def backup_catalogue_rescan(
    *, using: str = "default", actor=None, progress: Progress = None
) -> dict:
    """List again every set whose copies exist, from their MAC'd manifests.

    Adds the sets the catalogue does not know and settles those a restore
    left ``running`` (the set being written when the snapshot was taken);
    sets it already knows otherwise are left as they are. Runs under the
    backup lock, so no set is being written meanwhile. Returns
    ``{"added": [ids], "settled": [ids], "untrusted": [reasons]}``.
    """
    untrusted: list[str] = []
    with _exclusive():
        local = {n: _local_manifests(n, untrusted) for n in (1, 2)}
        bucket_error = ""
        try:
            remote = _bucket_manifests(untrusted)
        except offsite.OffsiteError as exc:
            remote, bucket_error = {}, str(exc)
            _say(progress, f"the bucket could not be read: {exc}")
        ids = sorted(set(local[1]) | set(local[2]) | set(remote))
        known = {
            item.pk: item for item in BackupSet.objects.using(using).filter(pk__in=ids)
        }
        added, settled = [], []
        with transaction.atomic(using=using):
            for set_id in ids:
                existing = known.get(set_id)
                if existing is not None and existing.state != SetState.RUNNING:
                    continue
                manifest = (
                    local[1].get(set_id) or local[2].get(set_id) or remote[set_id][0]
                )
                present = {
                    n: str(set_folder(n, set_id)) for n in (1, 2) if set_id in local[n]
                }
                versions: dict = {}
                if set_id in remote:
                    present[3] = (
                        f"s3://{settings.BACKUP_S3_BUCKET}/{offsite.prefix_for(set_id)}"
                    )
                    versions = remote[set_id][1]
                _write_set(
                    set_id, manifest, present, versions, existing, using, bucket_error
                )
                (settled if existing else added).append(set_id)
            if added:
                connection = connections[using]
                with connection.cursor() as cursor:
                    for sql in connection.ops.sequence_reset_sql(
                        no_style(), [BackupSet, BackupCopy]
                    ):
                        cursor.execute(sql)
    for reason in untrusted:
        logger.warning("backup catalogue rescan: %s", reason)
        _say(progress, reason)
    _say(
        progress,
        f"catalogue rebuilt: {len(added)} set(s) added, {len(settled)} settled, "
        f"{len(untrusted)} manifest(s) refused",
    )
    if added or settled or untrusted:  # a restore's own event carries the rest
        audit_record(
            event_type="backup.rescan",
            actor=actor,
            details={"added": added, "settled": settled, "untrusted": untrusted},
        )
    return {"added": added, "settled": settled, "untrusted": untrusted}
