"""Take a set: copies 1 and 2 from one snapshot, then copy 3 to S3."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from backups import crypto, databases, filesets, logical, offsite
from backups.models import BackupCopy, BackupSet, CopyState, SetState
from backups.services.common import (
    BUSY,
    DATA_2,
    DB_ARTIFACT,
    FILES_1,
    FILES_2,
    MANIFEST,
    Progress,
    _counted,
    _exclusive,
    _hashed,
    _partial,
    _say,
    set_folder,
)
from kreo.worker import Heartbeat

INTERRUPTED = "Interrupted: the worker stopped before the set was complete."
FILES_CHANGED = "The project files changed while the set was written; retry."
# Why a set is incomplete, on the set (the admin list and backup_list show it).
NO_BUCKET = (
    "Incomplete: no offsite bucket is configured (BACKUP_S3_BUCKET), so copy 3 "
    "was not written and the 3-2-1 rule is not met."
)
OFFSITE_FAILED = (
    "Incomplete: copy 3 could not be written to S3 ({error}); the hourly "
    "retry uploads it."
)


WORKER_STOPPED = (
    "Failed: the worker running it stopped (no heartbeat for {seconds} s); "
    "its partial files were removed and a new backup was queued."
)
OFFSITE_LEFT_LOCKED = (
    "{count} object(s) of copy 3 already uploaded are under Object Lock until "
    "{until}; they cannot be deleted before then and the daily retention job "
    "removes them once they expire."
)


def _fail_dead(backup_set: BackupSet, error: str, error_code: str) -> None:
    """Fail a set whose writer died; remove its partial copies and audit it.

    Copies 1 and 2 (complete or ``.partial``) are removed. Objects of copy 3
    already uploaded are deleted; those under Object Lock cannot be, so copy
    3 is marked ``locked`` with its retention date and the retention job
    deletes them once they expire. The set stays ``failed``: never good.
    """
    for n in (1, 2):  # files first: a set seen failed has none left
        shutil.rmtree(set_folder(n, backup_set.pk), ignore_errors=True)
        shutil.rmtree(_partial(set_folder(n, backup_set.pk)), ignore_errors=True)
    backup_set.state = SetState.FAILED
    backup_set.error = error[:4000]
    backup_set.finished_at = timezone.now()
    backup_set.save(update_fields=["state", "error", "finished_at"])
    backup_set.copies.filter(state=CopyState.PENDING).update(
        state=CopyState.FAILED, error=error[:4000]
    )
    offsite_note = ""
    if settings.BACKUP_S3_BUCKET:
        try:
            left = offsite.written_versions(offsite.prefix_for(backup_set.pk))
            gone = offsite.delete_prefix(backup_set.pk) if left else True
        except offsite.OffsiteError as exc:
            left, gone = {"?": ""}, False
            offsite_note = f"copy 3 not cleaned (S3: {exc}); "
        if not gone:
            until = timezone.now() + timedelta(days=settings.BACKUP_S3_LOCK_DAYS)
            offsite_note += OFFSITE_LEFT_LOCKED.format(
                count=len(left), until=until.date().isoformat()
            )
            BackupCopy.objects.filter(backup_set=backup_set, number=3).update(
                state=CopyState.LOCKED, locked_until=until, error=offsite_note[:4000]
            )
    audit_record(
        event_type="backup.create",
        target=backup_set,
        outcome=Outcome.FAILURE,
        error_code=error_code,
        error_description=error,
        details={"offsite": offsite_note} if offsite_note else None,
    )


def backup_cleanup_interrupted() -> list[int]:
    """Fail sets left ``running`` by a killed worker and remove their files.

    Call only while holding the backup lock: no set can be running then.
    """
    stale = list(BackupSet.objects.filter(state=SetState.RUNNING))
    for backup_set in stale:
        _fail_dead(backup_set, INTERRUPTED, "interrupted")
    for root in (settings.BACKUP_COPY1_DIR, settings.BACKUP_COPY2_DIR):
        for leftover in Path(root).glob("*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)
    return [backup_set.pk for backup_set in stale]


def backup_sweep_stale(*, now=None) -> list[int]:
    """Fail and clean the running sets whose worker died; return their ids.

    A set is dead when its heartbeat is older than ``KREO_TASK_STALE_SECONDS``
    *and* the backup lock is free (a live writer holds it, so a slow or
    briefly disconnected one is never failed). Busy lock: nothing to do now.
    """
    seconds = settings.KREO_TASK_STALE_SECONDS
    cutoff = (now or timezone.now()) - timedelta(seconds=seconds)
    candidates = BackupSet.objects.filter(state=SetState.RUNNING).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    )
    if not candidates.exists():
        return []
    try:
        with _exclusive():
            dead = list(candidates)
            for backup_set in dead:
                _fail_dead(
                    backup_set, WORKER_STOPPED.format(seconds=seconds), "worker_lost"
                )
            return [backup_set.pk for backup_set in dead]
    except RuntimeError as exc:
        if str(exc) == BUSY:
            return []
        raise


def _beat(set_id: int) -> None:
    BackupSet.objects.filter(pk=set_id, state=SetState.RUNNING).update(
        heartbeat_at=timezone.now()
    )


def _write(
    writer: Callable, chunks: Iterable[bytes], path: Path, progress: Progress
) -> dict:
    plain = hashlib.sha256()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "wb") as raw:
        out = crypto.HashingWriter(raw)
        writer(_hashed(_counted(chunks, path.name, progress), plain), out)
        raw.flush()
        os.fsync(raw.fileno())
    _say(progress, f"  {path.name}: {out.size / 1048576:,.1f} MiB written")
    return {
        "sha256": out.sha256.hexdigest(),
        "size": out.size,
        "plain_sha256": plain.hexdigest(),
    }


def _write_copies(backup_set: BackupSet, progress: Progress) -> dict:
    """Write copies 1 and 2 from one snapshot; return the manifest."""
    key = crypto.key_a()
    crypto.manifest_key()  # fail now, not after the copies are written
    recipient = crypto.age_recipient()
    folders = {n: set_folder(n, backup_set.pk) for n in (1, 2)}
    for folder in folders.values():
        _partial(folder).mkdir(parents=True, mode=0o700)
    with databases.snapshot() as snap:
        _say(progress, f"snapshot of the {snap.vendor} database taken")
        part1, part2 = _partial(folders[1]), _partial(folders[2])
        db_name = DB_ARTIFACT[snap.vendor]

        def aead(name: str) -> Callable:
            return lambda chunks, out: crypto.seal_artifact(
                chunks, out, key, set_id=backup_set.pk, name=name
            )

        age = lambda chunks, out: crypto.age_encrypt(chunks, out, recipient)  # noqa: E731
        tables: dict = {}
        # Copy 1's dump (pg_dump is its own process; AES and SHA-256 release
        # the GIL) runs in a thread while this one writes the logical export,
        # which also counts and checksums every table for the manifest.
        with ThreadPoolExecutor(max_workers=1) as pool:
            _say(progress, "copy 1: native dump, sealed (KREOSEAL)")
            dump = pool.submit(
                _write,
                aead(db_name),
                databases.native_dump(snap),
                part1 / db_name,
                progress,
            )
            _say(progress, "copy 2: logical export, age")
            art2 = {
                DATA_2: _write(
                    age,
                    logical.export_lines(snap.alias, tables),
                    part2 / DATA_2,
                    progress,
                )
            }
            art1 = {db_name: dump.result()}
        _say(progress, f"{len(tables)} tables counted and checksummed")
        files1 = filesets.FilesSummary()
        art1[FILES_1] = _write(
            aead(FILES_1),
            filesets.tar_stream(filesets.file_names(snap.alias), files1),
            part1 / FILES_1,
            progress,
        )
        files2 = filesets.FilesSummary()
        art2[FILES_2] = _write(
            age,
            filesets.tar_stream(filesets.file_names(snap.alias), files2),
            part2 / FILES_2,
            progress,
        )
    if files1.as_dict() != files2.as_dict():
        raise RuntimeError(FILES_CHANGED)
    manifest = {
        "format": "kreo-backup/1",
        "set_id": backup_set.pk,
        "created_at": backup_set.created_at.isoformat(),
        "engine": snap.vendor,
        "release": settings.KREO_RELEASE,
        "tables": tables,
        "files": files1.as_dict(),
        "copies": {
            "1": {
                "encryption": "KREOSEAL v1, BACKUP_ENCRYPTION_KEY",
                "artifacts": art1,
            },
            "2": {
                "encryption": "age X25519",
                "recipient": recipient,
                "format": "JSON Lines per model + tar",
                "artifacts": art2,
            },
            "3": {
                "bucket": settings.BACKUP_S3_BUCKET,
                "region": settings.BACKUP_S3_REGION,
                "prefix": offsite.prefix_for(backup_set.pk),
                "artifacts": art1,
            },
        },
    }
    sealed = crypto.manifest_seal(manifest)
    for folder in folders.values():
        manifest_path = _partial(folder) / MANIFEST
        manifest_path.write_bytes(sealed)
        manifest_path.chmod(0o600)
        _partial(folder).rename(folder)
    return manifest


def backup_create(
    *,
    actor=None,
    trigger: str = "manual",
    progress: Progress = None,
    task_id: str = "",
):
    """Take a 3-2-1 set now; return it (``good``, ``incomplete`` or ``failed``).

    ``good`` needs all three copies: without copy 3 (S3 down, the bucket in
    another region, or no bucket configured) the set is ``incomplete`` and
    counts as no good backup until ``backup_offsite_retry`` uploads it.
    While it runs, a thread stamps the set's heartbeat (``backup_sweep_stale``).
    """
    with _exclusive():
        cleaned = backup_cleanup_interrupted()
        if cleaned:
            _say(progress, f"cleaned up interrupted sets {cleaned}")
        now = timezone.now()
        backup_set = BackupSet.objects.create(
            created_at=now,
            heartbeat_at=now,
            trigger=trigger,
            actor=actor,
            engine=connection.vendor,
            task_id=task_id,
        )
        with Heartbeat(lambda: _beat(backup_set.pk)):
            return _take(backup_set, actor, trigger, progress)


def _take(backup_set: BackupSet, actor, trigger: str, progress: Progress):
    """Write the copies of a set just created (under the lock, heartbeat on)."""
    copies = {
        n: BackupCopy.objects.create(backup_set=backup_set, number=n) for n in (1, 2, 3)
    }
    _say(progress, f"backup set {backup_set.pk} started")
    try:
        manifest = _write_copies(backup_set, progress)
    except Exception as exc:
        backup_set.state = SetState.FAILED
        backup_set.error = str(exc)[:4000]
        backup_set.finished_at = timezone.now()
        backup_set.save()
        BackupCopy.objects.filter(backup_set=backup_set).update(
            state=CopyState.FAILED, error=str(exc)[:4000]
        )
        for n in (1, 2):
            shutil.rmtree(_partial(set_folder(n, backup_set.pk)), ignore_errors=True)
            shutil.rmtree(set_folder(n, backup_set.pk), ignore_errors=True)
        audit_record(
            event_type="backup.create",
            actor=actor,
            outcome=Outcome.FAILURE,
            target=backup_set,
            error_code="backup_failed",
            error_description=str(exc),
        )
        raise
    backup_set.manifest = manifest
    backup_set.save(update_fields=["manifest"])
    for n in (1, 2):
        artifacts = manifest["copies"][str(n)]["artifacts"]
        copy = copies[n]
        copy.state = CopyState.DONE
        copy.location = str(set_folder(n, backup_set.pk))
        copy.size = sum(a["size"] for a in artifacts.values())
        copy.save()
    _offsite_copy(backup_set, copies[3], progress)
    _settle(backup_set, copies[3])
    backup_set.finished_at = timezone.now()
    backup_set.save(update_fields=["state", "error", "finished_at"])
    audit_record(
        event_type="backup.create",
        actor=actor,
        target=backup_set,
        outcome=Outcome.SUCCESS,
        details={
            "state": backup_set.state,
            "trigger": trigger,
            "tables": len(manifest["tables"]),
            "files": manifest["files"]["count"],
        },
    )
    _say(progress, f"backup set {backup_set.pk}: {backup_set.state}")
    return backup_set


def _settle(backup_set: BackupSet, copy3: BackupCopy) -> None:
    """Good with copy 3 written, else incomplete with the reason on the set."""
    if copy3.state == CopyState.DONE:
        backup_set.state, backup_set.error = SetState.GOOD, ""
    elif copy3.state == CopyState.SKIPPED:
        backup_set.state, backup_set.error = SetState.INCOMPLETE, NO_BUCKET
    else:
        backup_set.state = SetState.INCOMPLETE
        backup_set.error = OFFSITE_FAILED.format(error=copy3.error)[:4000]


def _offsite_copy(backup_set: BackupSet, copy: BackupCopy, progress: Progress) -> None:
    if not settings.BACKUP_S3_BUCKET:
        copy.state = CopyState.SKIPPED
        copy.error = NO_BUCKET
        copy.save()
        _say(progress, NO_BUCKET)
        return
    copy.attempts += 1
    _say(progress, f"copy 3: uploading to s3://{settings.BACKUP_S3_BUCKET}")
    try:  # any failure leaves the set incomplete, never running
        folder = set_folder(1, backup_set.pk)
        artifacts = backup_set.manifest["copies"]["1"]["artifacts"]
        paths = [folder / name for name in artifacts] + [folder / MANIFEST]
        checksums = {name: a["sha256"] for name, a in artifacts.items()}
        checksums[MANIFEST] = hashlib.sha256(
            (folder / MANIFEST).read_bytes()
        ).hexdigest()
        prefix, until, versions = offsite.upload(backup_set.pk, paths, checksums)
    except Exception as exc:
        copy.state = CopyState.FAILED
        copy.error = str(exc)[:4000]
        copy.save()
        _say(progress, f"copy 3 failed (will be retried): {exc}")
        return
    copy.state = CopyState.DONE
    copy.error = ""
    copy.location = f"s3://{settings.BACKUP_S3_BUCKET}/{prefix}"
    copy.size = sum(a["size"] for a in artifacts.values())
    copy.locked_until = until
    copy.versions = versions
    copy.save()


def backup_offsite_retry(*, backup_set: BackupSet | None = None) -> list[BackupSet]:
    """Upload copy 3 of incomplete sets again; a set whose upload succeeds is good.

    Without a bucket configured there is nothing to retry: the sets stay
    incomplete (and are uploaded by the first retry once one is set).
    """
    if not settings.BACKUP_S3_BUCKET:
        return []
    sets = (
        [backup_set]
        if backup_set
        else list(BackupSet.objects.filter(state=SetState.INCOMPLETE))
    )
    done = []
    for item in sets:
        copy = item.copies.get(number=3)
        _offsite_copy(item, copy, None)
        _settle(item, copy)
        item.save(update_fields=["state", "error"])
        if item.state == SetState.GOOD:
            done.append(item)
        audit_record(
            event_type="backup.offsite",
            target=item,
            outcome=Outcome.SUCCESS
            if copy.state == CopyState.DONE
            else Outcome.FAILURE,
            error_description=copy.error,
        )
    return done
