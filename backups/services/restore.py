"""Restore a set's database and files from one copy."""

from __future__ import annotations

import contextlib
import itertools
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.management import call_command
from django.db import connections, transaction

from audit.models import Outcome
from audit.services import audit_record
from backups import crypto, databases, filesets, logical, offsite
from backups.manifest import read_manifest
from backups.models import BackupCopy, BackupSet
from backups.services.common import (
    ARTIFACT_MISMATCH,
    DATA_2,
    DB_ARTIFACT,
    FILES_1,
    FILES_2,
    MANIFEST,
    Progress,
    _counted,
    _say,
    set_folder,
)

RESTORE_NEEDS_LEDGER = (
    "The erasure ledger cannot be read, so nothing was restored: without it "
    "projects erased since the backup would come back. Try again once the "
    "ledger answers."
)
RESTORE_WRONG_REGION = "Nothing was restored: {problem}"
RESCAN_SKIPPED = (
    "The catalogue was not rebuilt after the restore ({error}); run "
    "`manage.py backup_list --rescan`."
)
RESTORE_REFUSED = "Copy {copy} of set {set_id} refused, nothing was restored: {error}"
RESTORE_LEDGER_STALE = (
    "The erasure ledger could not be read again after the restore: the "
    "{count} erasures read before it were applied; run "
    "projects.keys.after_restore() once the ledger answers for any newer one."
)


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pull the first piece now, so a wrong key fails before any write."""
    first = next(chunks, b"")
    return itertools.chain([first], chunks)


def _copy3_versions(set_id: int) -> dict[str, str]:
    """The versions the set wrote: the catalogue's, else the first of each."""
    known = BackupCopy.objects.filter(backup_set_id=set_id, number=3).first()
    if known is not None and known.versions:
        return dict(known.versions)
    return offsite.written_versions(offsite.prefix_for(set_id))


def _download(
    set_id: int, names: list[str], folder: Path, versions: dict, progress: Progress
):
    for name in [*names, MANIFEST]:
        _say(progress, f"copy 3: downloading {name}")
        with open(folder / name, "wb") as out:
            for piece in offsite.stream(
                offsite.prefix_for(set_id) + name, versions.get(name)
            ):
                out.write(piece)


def _refuse_wrong_region(set_id: int, copy: int, actor) -> None:
    """Copy 3 only from a bucket in BACKUP_S3_REGION, checked before anything
    is read or touched."""
    problem = offsite.region_problem()
    if not problem:
        return
    message = RESTORE_WRONG_REGION.format(problem=problem)
    audit_record(
        event_type="backup.restore",
        actor=actor,
        target=BackupSet.objects.filter(pk=set_id).first(),
        outcome=Outcome.FAILURE,
        error_code="wrong_region",
        error_description=message,
        details={"set_id": set_id, "copy": copy},
    )
    raise offsite.OffsiteError(message)


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
    gone. Each artifact is read once: its size is checked and the key tried
    before the target is touched, its SHA-256 while it is decrypted into the
    target, whose restore rolls back on a mismatch (the files artifact, whose
    files are written one by one, is checked whole first). A wrong key, a
    corrupted, truncated or another set's artifact changes nothing. Returns
    the manifest.

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

    if copy == 3:
        _refuse_wrong_region(set_id, copy, actor)
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
            versions = _copy3_versions(set_id)
            manifest = read_manifest(3, set_id, versions.get(MANIFEST))
            names = list(manifest["copies"]["1"]["artifacts"])
            folder = Path(scratch)
            _download(set_id, names, folder, versions, progress)
            manifest = crypto.manifest_open((folder / MANIFEST).read_bytes())
            source_copy = 1
        else:
            manifest = read_manifest(copy, set_id)
            folder = set_folder(copy, set_id)
        artifacts = manifest["copies"][str(source_copy)]["artifacts"]
        with _refusal(set_id, copy, actor):
            for name, expected in artifacts.items():
                path = folder / name
                if not path.exists() or path.stat().st_size != expected["size"]:
                    raise ValueError(ARTIFACT_MISMATCH.format(name=name))
        alias = databases.alias_for_url(target_db) if target_db else "default"
        # A restore into the live database: no pod settles the ledger meanwhile.
        marked = restoring() if alias == "default" else contextlib.nullcontext()
        try:
            with marked:
                with _refusal(set_id, copy, actor):
                    _restore_into(
                        manifest,
                        set_id,
                        source_copy,
                        folder,
                        alias,
                        restore_files,
                        progress,
                    )
                # Erasures made since the backup stay erased (projects.keys).
                erasures = after_restore(
                    using=alias,
                    tombstones=tombstones,
                    withdrawn=rolled_back,
                    remove_objects=restore_files or alias == "default",
                )
            catalogue = _rescan_after_restore(alias, actor, progress)
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
            "catalogue": catalogue,
        },
    )
    return manifest


@contextlib.contextmanager
def _refusal(set_id: int, copy: int, actor) -> Iterator[None]:
    """A bad artifact (wrong key, corrupted, truncated, not the manifest's)
    refuses the restore, audited, with the copy named: whatever of it was fed
    to the database was rolled back (``_checked``)."""
    try:
        yield
    except (crypto.BackupCryptoError, ValueError) as exc:
        message = RESTORE_REFUSED.format(copy=copy, set_id=set_id, error=exc)
        audit_record(
            event_type="backup.restore",
            actor=actor,
            target=BackupSet.objects.filter(pk=set_id).first(),
            outcome=Outcome.FAILURE,
            error_code="restore_refused",
            error_description=message,
            details={"set_id": set_id, "copy": copy},
        )
        kind = (
            crypto.BackupCryptoError
            if isinstance(exc, crypto.BackupCryptoError)
            else ValueError
        )
        raise kind(message) from exc


def _rescan_after_restore(alias: str, actor, progress: Progress) -> dict:
    """The restored catalogue is the backup's: list again every set whose
    copies exist. The restore itself is done, so a failure here only says so."""
    from backups.services.catalogue import backup_catalogue_rescan

    try:
        return backup_catalogue_rescan(using=alias, actor=actor, progress=progress)
    except Exception as exc:
        _say(progress, RESCAN_SKIPPED.format(error=exc))
        return {"error": str(exc)}


def _checked(
    chunks: Iterator[bytes], source: crypto.HashingReader, expected: dict, name: str
) -> Iterator[bytes]:
    """The plaintext of an artifact read once: its SHA-256 and size are
    checked against the manifest as it is decrypted, and the last non-empty
    piece is held back until they match. A restore fed from it never gets
    a whole stream from a wrong file: pg_restore is killed before its
    single transaction commits, the logical import and SQLite copy roll back.
    """
    held = None
    for piece in chunks:
        if not piece:
            continue
        if held is not None:
            yield held
        held = piece
    source.drain()
    if (
        source.size != expected["size"]
        or source.sha256.hexdigest() != expected["sha256"]
    ):
        raise ValueError(ARTIFACT_MISMATCH.format(name=name))
    if held is not None:
        yield held


def _check_whole(path: Path, expected: dict, name: str) -> None:
    """SHA-256 of an artifact whose plaintext is written as it is read (the
    files go to storage one by one, nothing to roll back): checked first."""
    with open(path, "rb") as raw:
        source = crypto.HashingReader(raw)
        source.drain()
    if (
        source.size != expected["size"]
        or source.sha256.hexdigest() != expected["sha256"]
    ):
        raise ValueError(ARTIFACT_MISMATCH.format(name=name))


def _restore_into(
    manifest, set_id, copy, folder, alias, restore_files, progress
) -> None:
    """Restore from the artifacts in ``folder``, each opened as the one of
    set ``set_id`` it is named for (another set's does not open)."""
    engine = manifest["engine"]
    if copy == 1 and connections[alias].vendor != engine:
        raise ValueError(databases.ENGINE_MISMATCH.format(copy=1, engine=engine))
    artifacts = manifest["copies"][str(copy)]["artifacts"]
    db_name = DATA_2 if copy == 2 else DB_ARTIFACT[engine]
    files_name = FILES_2 if copy == 2 else FILES_1
    if restore_files:
        _check_whole(folder / files_name, artifacts[files_name], files_name)

    def plaintext(stack: contextlib.ExitStack, name: str) -> Iterator[bytes]:
        source = crypto.HashingReader(stack.enter_context(open(folder / name, "rb")))
        if copy == 2:
            chunks = crypto.age_decrypt(source)
        else:
            chunks = crypto.open_artifact(
                source, crypto.key_a(), set_id=set_id, name=name
            )
        return _primed(_checked(chunks, source, artifacts[name], name))

    with contextlib.ExitStack() as stack:
        db_stream = plaintext(stack, db_name)
        files_stream = plaintext(stack, files_name) if restore_files else None
        saved = _catalogue_rows(alias)
        _say(progress, f"restoring the database from {db_name}")
        if copy == 2:
            call_command("migrate", database=alias, verbosity=0, interactive=False)
            with transaction.atomic(using=alias):
                logical.import_lines(_counted(db_stream, db_name, progress), alias)
                for _rest in db_stream:  # read to its end: checked, or rolled back
                    pass
        else:
            databases.native_restore(
                _counted(db_stream, db_name, progress), engine, alias
            )
            connections[alias].close()
        _catalogue_restore(saved, alias)
        if files_stream is not None:
            _say(progress, f"restoring files from {files_name}")
            summary = filesets.tar_restore(_counted(files_stream, files_name, progress))
            _say(progress, f"{summary.count} files restored")
