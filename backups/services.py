"""Backup sets: create, verify, restore, drill, prune, retry the offsite copy.

A set is long work across processes (pg_dump, S3), so a service here is not
one transaction: each state change is saved as it happens, and a set becomes
``good`` only in its last step. A worker killed half-way leaves a ``running``
set, which the next run marks failed and whose folders it removes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from backups import crypto, databases, filesets, logical, offsite
from backups.models import BackupCopy, BackupSet, CopyState, RestoreDrill, SetState
from kreo.streams import IterReader

Progress = Callable[[str], None] | None

BUSY = "Another backup is running; try again when it has finished."
NO_SUCH_COPY = "Backup set {id} has no copy {copy} here ({where})."
ARTIFACT_MISMATCH = "{name}: SHA-256 or size differs from the manifest."
INTERRUPTED = "Interrupted: the worker stopped before the set was complete."
NOTHING_TO_DRILL = "No backup set to drill: none has completed."
FILES_CHANGED = "The project files changed while the set was written; retry."
RESTORE_NEEDS_LEDGER = (
    "The erasure ledger cannot be read, so nothing was restored: without it "
    "projects erased since the backup would come back. Try again once the "
    "ledger answers."
)
RESTORE_LEDGER_STALE = (
    "The erasure ledger could not be read again after the restore: the "
    "{count} erasures read before it were applied; run "
    "projects.keys.after_restore() once the ledger answers for any newer one."
)
DRILL_MAIL_SUBJECT = "Kreo backup restore drill FAILED for set {id}"

DB_ARTIFACT = {"postgresql": "db.pgdump.enc", "sqlite": "db.sqlite3.enc"}
FILES_1 = "files.tar.enc"
DATA_2 = "data.jsonl.age"
FILES_2 = "files.tar.age"
MANIFEST = "manifest.json"
REPORT_EVERY = 64 * 1024 * 1024


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def _counted(chunks: Iterable[bytes], label: str, progress: Progress):
    done, next_report = 0, REPORT_EVERY
    for piece in chunks:
        done += len(piece)
        if done >= next_report:
            _say(progress, f"  {label}: {done / 1048576:,.0f} MiB")
            next_report += REPORT_EVERY
        yield piece


def _hashed(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    for piece in chunks:
        digest.update(piece)
        yield piece


def set_folder(copy: int, set_id: int) -> Path:
    root = settings.BACKUP_COPY1_DIR if copy == 1 else settings.BACKUP_COPY2_DIR
    return Path(root) / f"{set_id:08d}"


def _partial(folder: Path) -> Path:
    return folder.with_name(folder.name + ".partial")


@contextmanager
def _exclusive():
    root = Path(settings.BACKUP_COPY1_DIR)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RuntimeError(BUSY) from exc
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def backup_cleanup_interrupted() -> list[int]:
    """Fail sets left ``running`` by a killed worker and remove their folders.

    Call only while holding the backup lock: no set can be running then.
    """
    stale = list(BackupSet.objects.filter(state=SetState.RUNNING))
    for backup_set in stale:
        backup_set.state = SetState.FAILED
        backup_set.error = INTERRUPTED
        backup_set.finished_at = timezone.now()
        backup_set.save(update_fields=["state", "error", "finished_at"])
        backup_set.copies.filter(state=CopyState.PENDING).update(
            state=CopyState.FAILED, error=INTERRUPTED
        )
        for copy in (1, 2):
            shutil.rmtree(set_folder(copy, backup_set.pk), ignore_errors=True)
    for root in (settings.BACKUP_COPY1_DIR, settings.BACKUP_COPY2_DIR):
        for leftover in Path(root).glob("*.partial"):
            shutil.rmtree(leftover, ignore_errors=True)
    return [backup_set.pk for backup_set in stale]


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
        aead = lambda chunks, out: crypto.aead_encrypt(chunks, out, key)  # noqa: E731
        age = lambda chunks, out: crypto.age_encrypt(chunks, out, recipient)  # noqa: E731
        part1, part2 = _partial(folders[1]), _partial(folders[2])
        db_name = DB_ARTIFACT[snap.vendor]
        tables: dict = {}
        # Copy 1's dump (pg_dump is its own process; AES and SHA-256 release
        # the GIL) runs in a thread while this one writes the logical export,
        # which also counts and checksums every table for the manifest.
        with ThreadPoolExecutor(max_workers=1) as pool:
            _say(progress, "copy 1: native dump, AES-256-GCM")
            dump = pool.submit(
                _write, aead, databases.native_dump(snap), part1 / db_name, progress
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
            aead,
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
            "1": {"encryption": "AES-256-GCM chunked, key A", "artifacts": art1},
            "2": {
                "encryption": "age X25519",
                "recipient": recipient,
                "format": "JSON Lines per model + tar",
                "artifacts": art2,
            },
            "3": {
                "bucket": settings.BACKUP_S3_BUCKET,
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


def backup_create(*, actor=None, trigger: str = "manual", progress: Progress = None):
    """Take a 3-2-1 set now; return it (``good``, ``partial`` or ``failed``)."""
    with _exclusive():
        cleaned = backup_cleanup_interrupted()
        if cleaned:
            _say(progress, f"cleaned up interrupted sets {cleaned}")
        backup_set = BackupSet.objects.create(
            created_at=timezone.now(),
            trigger=trigger,
            actor=actor,
            engine=connection.vendor,
        )
        copies = {
            n: BackupCopy.objects.create(backup_set=backup_set, number=n)
            for n in (1, 2, 3)
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
                shutil.rmtree(
                    _partial(set_folder(n, backup_set.pk)), ignore_errors=True
                )
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
        backup_set.state = (
            SetState.GOOD
            if copies[3].state in (CopyState.DONE, CopyState.SKIPPED)
            else SetState.PARTIAL
        )
        backup_set.finished_at = timezone.now()
        backup_set.save(update_fields=["state", "finished_at"])
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


def _offsite_copy(backup_set: BackupSet, copy: BackupCopy, progress: Progress) -> None:
    if not settings.BACKUP_S3_BUCKET:
        copy.state = CopyState.SKIPPED
        copy.save()
        return
    folder = set_folder(1, backup_set.pk)
    artifacts = backup_set.manifest["copies"]["1"]["artifacts"]
    paths = [folder / name for name in artifacts] + [folder / MANIFEST]
    checksums = {name: a["sha256"] for name, a in artifacts.items()}
    checksums[MANIFEST] = hashlib.sha256((folder / MANIFEST).read_bytes()).hexdigest()
    copy.attempts += 1
    _say(progress, f"copy 3: uploading to s3://{settings.BACKUP_S3_BUCKET}")
    try:
        prefix, until = offsite.upload(backup_set.pk, paths, checksums)
    except Exception as exc:  # any failure leaves the set partial, never running
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
    copy.save()


def backup_offsite_retry(*, backup_set: BackupSet | None = None) -> list[BackupSet]:
    """Upload copy 3 of partial sets again; a set whose upload succeeds is good."""
    sets = (
        [backup_set]
        if backup_set
        else list(BackupSet.objects.filter(state=SetState.PARTIAL))
    )
    done = []
    for item in sets:
        copy = item.copies.get(number=3)
        _offsite_copy(item, copy, None)
        if copy.state == CopyState.DONE:
            item.state = SetState.GOOD
            item.save(update_fields=["state"])
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


# Reading a copy back -------------------------------------------------------


class _HashingReader(io.RawIOBase):
    def __init__(self, source):
        self.source = source
        self.sha256 = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        data = self.source.read(len(target))
        self.sha256.update(data)
        self.size += len(data)
        target[: len(data)] = data
        return len(data)

    def read(self, size=-1):
        data = self.source.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _open_artifact(copy: int, set_id: int, name: str):
    if copy == 3:
        return io.BufferedReader(
            IterReader(offsite.stream(offsite.prefix_for(set_id) + name)),
            1024 * 1024,
        )
    return open(set_folder(copy, set_id) / name, "rb")


def read_manifest(copy: int, set_id: int) -> dict:
    """The manifest that travels with a copy, its MAC checked."""
    if copy == 3:
        raw = offsite.read_small(offsite.prefix_for(set_id) + MANIFEST)
    else:
        path = set_folder(copy, set_id) / MANIFEST
        if not path.exists():
            raise FileNotFoundError(
                NO_SUCH_COPY.format(id=set_id, copy=copy, where=path.parent)
            )
        raw = path.read_bytes()
    return crypto.manifest_open(raw)


def _decrypting(copy: int, source) -> Iterator[bytes]:
    if copy == 2:
        return crypto.age_decrypt(source)
    return crypto.aead_decrypt(source, crypto.key_a())


def _check_artifact(copy: int, set_id: int, name: str, expected: dict) -> None:
    with _open_artifact(copy, set_id, name) as raw:
        source = _HashingReader(raw)
        plain = hashlib.sha256()
        for piece in _decrypting(copy, source):
            plain.update(piece)
        source.read()
    if (
        source.sha256.hexdigest() != expected["sha256"]
        or source.size != expected["size"]
        or plain.hexdigest() != expected["plain_sha256"]
    ):
        raise ValueError(ARTIFACT_MISMATCH.format(name=name))


def backup_verify(*, backup_set: BackupSet, actor=None, progress: Progress = None):
    """Decrypt every artifact of every copy and check it against the manifest.

    Returns one result per artifact: ``{"copy", "artifact", "ok", "error"}``.
    """
    results = []
    for copy in (1, 2, 3):
        state = backup_set.copy_state(copy)
        if state in (CopyState.SKIPPED, CopyState.PRUNED, CopyState.LOCKED, ""):
            continue
        if state != CopyState.DONE:
            results.append(
                {"copy": copy, "artifact": "-", "ok": False, "error": f"copy {state}"}
            )
            continue
        try:
            manifest = read_manifest(copy, backup_set.pk)
        except Exception as exc:
            results.append(
                {"copy": copy, "artifact": MANIFEST, "ok": False, "error": str(exc)}
            )
            continue
        if manifest != backup_set.manifest:
            results.append(
                {
                    "copy": copy,
                    "artifact": MANIFEST,
                    "ok": False,
                    "error": "differs from the catalogue's manifest",
                }
            )
            continue
        for name, expected in manifest["copies"][str(copy)]["artifacts"].items():
            _say(progress, f"copy {copy}: checking {name}")
            try:
                _check_artifact(copy, backup_set.pk, name, expected)
            except Exception as exc:
                results.append(
                    {"copy": copy, "artifact": name, "ok": False, "error": str(exc)}
                )
            else:
                results.append(
                    {"copy": copy, "artifact": name, "ok": True, "error": ""}
                )
    ok = all(r["ok"] for r in results) and bool(results)
    backup_set.verified_at = timezone.now()
    backup_set.verify_ok = ok
    backup_set.verify_report = results
    backup_set.save(update_fields=["verified_at", "verify_ok", "verify_report"])
    audit_record(
        event_type="backup.verify",
        actor=actor,
        target=backup_set,
        outcome=Outcome.SUCCESS if ok else Outcome.FAILURE,
        error_code="" if ok else "backup_corrupt",
        error_description="; ".join(
            f"copy {r['copy']} {r['artifact']}: {r['error']}"
            for r in results
            if not r["ok"]
        ),
    )
    return results


# Restore --------------------------------------------------------------------


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pull the first piece now, so a wrong key fails before any write."""
    first = next(chunks, b"")
    return itertools.chain([first], chunks)


def _download(set_id: int, names: list[str], folder: Path, progress: Progress):
    for name in [*names, MANIFEST]:
        _say(progress, f"copy 3: downloading {name}")
        with open(folder / name, "wb") as out:
            for piece in offsite.stream(offsite.prefix_for(set_id) + name):
                out.write(piece)


def _catalogue_rows(using: str) -> list[tuple]:
    from django.apps import apps

    existing = set(connections[using].introspection.table_names())
    saved = []
    for model in apps.get_app_config("backups").get_models():
        if model._meta.db_table in existing:
            saved.append((model, list(model._base_manager.using(using).all())))
    return saved


def _catalogue_restore(saved: list[tuple], using: str) -> None:
    from django.core.management.color import no_style

    conn = connections[using]
    with transaction.atomic(using=using):
        for model, _rows in reversed(saved):
            model._base_manager.using(using).all()._raw_delete(using)
        for model, rows in saved:
            if rows:
                model._base_manager.using(using)._insert(
                    rows,
                    fields=model._meta.local_concrete_fields,
                    using=using,
                    raw=True,
                )
        with conn.cursor() as cursor:
            for sql in conn.ops.sequence_reset_sql(no_style(), [m for m, _ in saved]):
                cursor.execute(sql)


def backup_restore(
    *,
    set_id: int,
    copy: int,
    target_db: str = "",
    actor=None,
    restore_files: bool = True,
    progress: Progress = None,
) -> dict:
    """Restore a set's database and files from one copy.

    Works from the copy alone (its MAC'd manifest), so the catalogue may be
    gone. Every artifact is checked against the manifest, and the key tried,
    before the target is touched: a wrong key or a corrupted file changes
    nothing. Returns the manifest.

    The erasure ledger is read first, and an unreadable one refuses the
    restore: read only afterwards, an outage at that moment would leave
    erased projects restored. Its tombstones are applied once the data is
    back, with any newer ones if it can be read again. Tombstones of erasures
    that certainly rolled back (past settling's grace, their project or file
    still in the live database) are left out, as settling would withdraw
    them: applied, they would erase live data. Objects are removed from the
    file storage only when the restore wrote its files there or restored the
    live database.
    """
    from projects.keys import (
        LedgerError,
        after_restore,
        ledger,
        ledger_rolled_back,
        restoring,
    )

    try:
        tombstones = ledger().tombstones()
    except LedgerError as exc:
        audit_record(
            event_type="backup.restore",
            actor=actor,
            target=BackupSet.objects.filter(pk=set_id).first(),
            outcome=Outcome.FAILURE,
            error_code="erasure_ledger",
            error_description=RESTORE_NEEDS_LEDGER,
            details={"set_id": set_id, "copy": copy, "ledger": str(exc)},
        )
        raise LedgerError(RESTORE_NEEDS_LEDGER) from exc
    rolled_back = ledger_rolled_back(tombstones)
    tombstones = [t for t in tombstones if t not in rolled_back]
    _say(progress, f"erasure ledger read: {len(tombstones)} tombstones")
    with tempfile.TemporaryDirectory(prefix="kreo-restore-") as scratch:
        source_copy = copy
        if copy == 3:
            manifest = read_manifest(3, set_id)
            names = list(manifest["copies"]["1"]["artifacts"])
            folder = Path(scratch)
            _download(set_id, names, folder, progress)
            manifest = crypto.manifest_open((folder / MANIFEST).read_bytes())
            source_copy = 1
        else:
            manifest = read_manifest(copy, set_id)
            folder = set_folder(copy, set_id)
        artifacts = manifest["copies"][str(source_copy)]["artifacts"]
        for name, expected in artifacts.items():
            path = folder / name
            size = path.stat().st_size if path.exists() else -1
            digest = crypto.sha256_of(crypto.file_chunks(path)) if size >= 0 else ""
            if size != expected["size"] or digest != expected["sha256"]:
                raise ValueError(ARTIFACT_MISMATCH.format(name=name))
        alias = databases.alias_for_url(target_db) if target_db else "default"
        # A restore into the live database: no pod settles the ledger meanwhile.
        marked = restoring() if alias == "default" else contextlib.nullcontext()
        try:
            with marked:
                _restore_into(
                    manifest, source_copy, folder, alias, restore_files, progress
                )
                # Erasures made since the backup stay erased (projects.keys).
                erasures = after_restore(
                    using=alias,
                    tombstones=tombstones,
                    withdrawn=rolled_back,
                    remove_objects=restore_files or alias == "default",
                )
            if not erasures["ledger_current"]:
                _say(progress, RESTORE_LEDGER_STALE.format(count=len(tombstones)))
        finally:
            if alias != "default":
                databases.drop_alias(alias)
    audit_record(
        event_type="backup.restore",
        actor=actor,
        target=BackupSet.objects.filter(pk=set_id).first(),
        details={
            "set_id": set_id,
            "copy": copy,
            "target": "other" if target_db else "current",
            "erasures": erasures,
        },
    )
    return manifest


def _restore_into(manifest, copy, folder, alias, restore_files, progress) -> None:
    engine = manifest["engine"]
    if copy == 1 and connections[alias].vendor != engine:
        raise ValueError(databases.ENGINE_MISMATCH.format(copy=1, engine=engine))
    decrypt = (
        (lambda f: crypto.age_decrypt(f))
        if copy == 2
        else (lambda f: crypto.aead_decrypt(f, crypto.key_a()))
    )
    db_name = DATA_2 if copy == 2 else DB_ARTIFACT[engine]
    files_name = FILES_2 if copy == 2 else FILES_1
    with open(folder / db_name, "rb") as db_file, open(folder / files_name, "rb") as fs:
        db_stream = _primed(decrypt(db_file))
        files_stream = _primed(decrypt(fs))
        saved = _catalogue_rows(alias)
        _say(progress, f"restoring the database from {db_name}")
        if copy == 2:
            call_command("migrate", database=alias, verbosity=0, interactive=False)
            logical.import_lines(_counted(db_stream, db_name, progress), alias)
        else:
            databases.native_restore(
                _counted(db_stream, db_name, progress), engine, alias
            )
            connections[alias].close()
        _catalogue_restore(saved, alias)
        if restore_files:
            _say(progress, f"restoring files from {files_name}")
            summary = filesets.tar_restore(_counted(files_stream, files_name, progress))
            _say(progress, f"{summary.count} files restored")


# Drill, retention ------------------------------------------------------------


@contextmanager
def _scratch_database():
    if connection.vendor == "postgresql":
        name = f"kreo_drill_{os.urandom(6).hex()}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        alias = databases.register_alias({"NAME": name}, prefix="drill")
        try:
            yield alias
        finally:
            databases.drop_alias(alias)
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
    else:
        with tempfile.TemporaryDirectory(prefix="kreo-drill-") as folder:
            alias = databases.register_alias(
                {"NAME": str(Path(folder) / "drill.sqlite3")}, prefix="drill"
            )
            try:
                yield alias
            finally:
                databases.drop_alias(alias)


def compare_with_manifest(manifest: dict, stats: dict, files: dict) -> list[str]:
    mismatches = []
    for table, expected in manifest["tables"].items():
        got = stats.get(table)
        if got != expected:
            mismatches.append(f"table {table}: expected {expected}, restored {got}")
    expected_files = {k: v for k, v in manifest["files"].items() if k != "missing"}
    got_files = {k: v for k, v in files.items() if k != "missing"}
    if got_files != expected_files:
        mismatches.append(f"files: expected {expected_files}, restored {got_files}")
    return mismatches


def backup_drill(
    *, actor=None, copy: int = 1, progress: Progress = None
) -> RestoreDrill:
    """Restore the latest set into a scratch database and compare with its manifest.

    A failure is recorded, audited and mailed to every active staff user.
    """
    backup_set = (
        BackupSet.objects.filter(state__in=[SetState.GOOD, SetState.PARTIAL])
        .order_by("-created_at", "-id")
        .first()
    )
    drill = RestoreDrill.objects.create(
        backup_set=backup_set, started_at=timezone.now(), copy_number=copy
    )
    mismatches: list[str] = []
    try:
        if backup_set is None:
            raise ValueError(NOTHING_TO_DRILL)
        manifest = read_manifest(copy, backup_set.pk)
        folder = set_folder(copy, backup_set.pk)
        with _scratch_database() as alias:
            _restore_into(manifest, copy, folder, alias, False, progress)
            stats = databases.table_stats(alias)
        files_name = FILES_2 if copy == 2 else FILES_1
        with open(folder / files_name, "rb") as fs:
            summary = filesets.tar_summary(_decrypting(copy, fs))
        mismatches = compare_with_manifest(manifest, stats, summary.as_dict())
    except Exception as exc:
        drill.error = str(exc)[:4000]
    drill.mismatches = mismatches
    drill.ok = not mismatches and not drill.error
    drill.finished_at = timezone.now()
    drill.save()
    audit_record(
        event_type="backup.drill",
        actor=actor,
        target=backup_set,
        outcome=Outcome.SUCCESS if drill.ok else Outcome.FAILURE,
        error_code="" if drill.ok else "drill_failed",
        error_description=drill.error or "; ".join(mismatches),
    )
    if not drill.ok:
        _mail_staff(drill)
    return drill


def _mail_staff(drill: RestoreDrill) -> None:
    recipients = list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .values_list("email", flat=True)
    )
    if not recipients:
        return
    body = "\n".join(
        [
            f"Restore drill {drill.pk} of backup set {drill.backup_set_id} failed.",
            drill.error,
            *drill.mismatches,
        ]
    )
    send_mail(
        DRILL_MAIL_SUBJECT.format(id=drill.backup_set_id),
        body,
        settings.DEFAULT_FROM_EMAIL,
        recipients,
        fail_silently=False,
    )


def retention_keep(sets: list[BackupSet]) -> set[int]:
    """Ids kept by the policy: the newest set of each of the last N days,
    weeks and months that have one (``BACKUP_KEEP_DAILY/WEEKLY/MONTHLY``)."""
    keep: set[int] = set()
    rules = (
        (settings.BACKUP_KEEP_DAILY, lambda t: t.date()),
        (settings.BACKUP_KEEP_WEEKLY, lambda t: t.isocalendar()[:2]),
        (settings.BACKUP_KEEP_MONTHLY, lambda t: (t.year, t.month)),
    )
    ordered = sorted(sets, key=lambda s: (s.created_at, s.pk), reverse=True)
    for count, bucket in rules:
        seen = []
        for item in ordered:
            slot = bucket(item.created_at)
            if slot in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(slot)
            keep.add(item.pk)
    return keep


def backup_prune(*, actor=None) -> list[int]:
    """Apply the retention policy to all three places; return the pruned ids.

    Objects under Object Lock stay in S3 until their retention ends: the
    copy is marked ``locked`` and retried by the next prune.
    """
    candidates = list(
        BackupSet.objects.filter(state__in=[SetState.GOOD, SetState.PARTIAL])
    )
    keep = retention_keep(candidates)
    pruned = []
    for item in candidates:
        if item.pk in keep:
            continue
        _prune_set(item)
        pruned.append(item.pk)
    for item in BackupSet.objects.filter(copies__state=CopyState.LOCKED).distinct():
        _prune_set(item)
    for item in BackupSet.objects.filter(state=SetState.FAILED).exclude(
        copies__state=CopyState.PRUNED
    ):
        for n in (1, 2):
            shutil.rmtree(set_folder(n, item.pk), ignore_errors=True)
    if pruned:
        audit_record(event_type="backup.prune", actor=actor, details={"pruned": pruned})
    return pruned


def _prune_set(item: BackupSet) -> None:
    for n in (1, 2):
        shutil.rmtree(set_folder(n, item.pk), ignore_errors=True)
    item.copies.filter(number__in=[1, 2]).update(state=CopyState.PRUNED)
    copy3 = item.copies.filter(number=3).first()
    if copy3 and copy3.state in (CopyState.DONE, CopyState.LOCKED):
        try:
            gone = offsite.delete_prefix(item.pk)
        except offsite.OffsiteError:
            gone = False
        copy3.state = CopyState.PRUNED if gone else CopyState.LOCKED
        copy3.save(update_fields=["state"])
    elif copy3:
        copy3.state = CopyState.PRUNED
        copy3.save(update_fields=["state"])
    item.state = SetState.PRUNED
    item.save(update_fields=["state"])


def backup_age_hours() -> float | None:
    """Hours since the last good set finished (None when there is none)."""
    last = (
        BackupSet.objects.filter(state=SetState.GOOD, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    if last is None:
        return None
    return (timezone.now() - last) / dt.timedelta(hours=1)


def manifest_json(backup_set: BackupSet) -> str:
    return json.dumps(backup_set.manifest, indent=1)
