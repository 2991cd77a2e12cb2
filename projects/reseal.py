"""Move project files still stored in an older format to ``KREOSEAL``.

``manage.py storage_reseal`` and ``keys_rotate`` both run ``storage_reseal``.
A file is a candidate while its row does not record KREOSEAL: a KREOF1
object (checked by its magic bytes: one already sealed only has its row
put right) or one stored before encryption. Each is replaced so that no
interruption loses it: the new object is written beside the old one (its
name is the old one's plus ``.kreoseal``, so a run that stopped half-way
finds and replaces its own leftover), opened again and its plaintext's
SHA-256 compared with the old one's, then the row is switched only if it
still names the old object, then the old object (every version) goes.
Running again continues with what is left; a second complete run does
nothing.

Data exports are not resealed: their key exists only in the link mailed to
the user. An old-format archive is counted (``exports_left``) and goes
when it expires or is downloaded (the purge job).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator

from django.conf import settings

from audit.models import Outcome
from audit.services import audit_record
from kreo import sealed
from projects import crypto
from projects.keys import KeyError_
from projects.models import ProjectFile
from projects.storage import (
    FORMAT,
    blob_chunks,
    blob_delete,
    blob_store,
    raw_head,
)

logger = logging.getLogger(__name__)

SUFFIX = ".kreoseal"
NEEDS_ENCRYPTION = "KREO_FILE_ENCRYPTION is off: nothing can be resealed."
MISMATCH = (
    "file {id}: the resealed object's plaintext differs from the old one's "
    "(SHA-256 {new} against {old}); the old object is kept."
)
FAILED = "{count} file(s) could not be resealed and were left as they are: {ids}"
STOPPED = "The run stopped ({error}) after {done} resealed; run it again to go on."


class ResealError(Exception):
    """One file could not be resealed; it is left as it was."""


def _candidates():
    return ProjectFile.objects.exclude(encryption=FORMAT).exclude(blob="")


def _hashed(chunks: Iterable[bytes], digest) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _already_sealed(item) -> bool:
    """Whether the object is KREOSEAL already (a row of a plaintext file is
    never taken at its first bytes: those are the user's)."""
    if not item.encryption:
        return False
    return crypto.is_current(raw_head(item.blob, len(sealed.MAGIC)))


def file_reseal(item: ProjectFile) -> bool:
    """Replace ``item``'s object by a KREOSEAL one; False when there was
    nothing to do (already sealed, or the row changed meanwhile).

    Raises ResealError (plaintext mismatch), crypto.FileIntegrityError (the
    old object is altered or missing), KeyError_ (no data key) or
    StorageUnavailable; the old object and the row are then as they were.
    """
    if _already_sealed(item):
        ProjectFile.objects.filter(pk=item.pk).update(encryption=FORMAT)
        return False
    storage = item.blob.storage
    old_name, old_format = item.blob.name, item.encryption
    new_name = old_name + SUFFIX
    if not ProjectFile.objects.filter(blob=new_name).exists():
        blob_delete(storage, new_name)  # an interrupted run's leftover, if any
    old_digest, new_digest = hashlib.sha256(), hashlib.sha256()
    source = _hashed(blob_chunks(item), old_digest)
    try:
        blob_store(item, source, key=new_name)
        if item.blob.name != new_name:  # the storage chose another name
            raise ResealError(f"file {item.pk}: stored as {item.blob.name}")
        for _ in _hashed(blob_chunks(item), new_digest):
            pass
        if new_digest.digest() != old_digest.digest():
            raise ResealError(
                MISMATCH.format(
                    id=item.pk, new=new_digest.hexdigest(), old=old_digest.hexdigest()
                )
            )
    except BaseException:
        written = item.blob.name
        item.blob, item.encryption = old_name, old_format
        if written != old_name:
            blob_delete(storage, written)
        raise
    switched = ProjectFile.objects.filter(pk=item.pk, blob=old_name).update(
        blob=new_name, encryption=FORMAT
    )
    if not switched:  # erased or replaced meanwhile: the new object is nobody's
        blob_delete(storage, new_name)
        return False
    blob_delete(storage, old_name)
    return True


def exports_left() -> int:
    """Stored data exports still in KREOF1: not resealable (module docstring)."""
    from privacy.models import DataExport, ExportState

    count = 0
    stored = DataExport.objects.filter(
        state__in=[ExportState.PENDING, ExportState.READY]
    ).exclude(blob="")
    for export in stored.iterator():
        try:
            head = raw_head(_ExportBlob(export.blob), len(sealed.MAGIC))
        except crypto.FileIntegrityError:
            continue  # its object is gone: nothing to reseal
        count += not crypto.is_current(head)
    return count


class _ExportBlob:
    def __init__(self, name: str):
        from django.core.files.storage import default_storage

        self.name, self.storage = name, default_storage


def storage_reseal(
    *,
    actor=None,
    dry_run: bool = False,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Reseal every project file still in an older format; one audit event.

    ``dry_run`` only counts (reading each candidate's first bytes).
    ``limit`` stops after that many files resealed (the rest is for the
    next run). ``progress(done, total)`` after each file. A file that
    cannot be resealed is left as it was, named in the summary and the
    event, and the run goes on; storage going down stops the run
    (StorageUnavailable, after the event).
    """
    if not settings.KREO_FILE_ENCRYPTION:
        raise ResealError(NEEDS_ENCRYPTION)
    pending = _candidates().select_related("project").order_by("pk")
    total = pending.count()
    resealed = already = seen = 0
    failed: list[str] = []
    exports: int | None = None
    stopped: BaseException | None = None
    try:
        for item in pending.iterator(chunk_size=200):
            if limit is not None and resealed >= limit:
                break
            seen += 1
            try:
                if dry_run:
                    already += _already_sealed(item)
                elif file_reseal(item):
                    resealed += 1
                else:
                    already += 1
            except (ResealError, crypto.FileIntegrityError, KeyError_) as exc:
                logger.error("storage_reseal: file %s left: %s", item.pk, exc)
                failed.append(str(item.pk))
            if progress:
                progress(seen, total)
        exports = exports_left()
    except BaseException as exc:
        stopped = exc
        raise
    finally:
        summary = {
            "dry_run": dry_run,
            "candidates": total,
            "resealed": resealed,
            "already_sealed": already,
            "failed": failed,
            "left": total - resealed - already - len(failed),
            "exports_left": exports,
        }
        problems = []
        if failed:
            problems.append(FAILED.format(count=len(failed), ids=", ".join(failed)))
        if stopped is not None:
            problems.append(STOPPED.format(done=resealed, error=stopped))
        audit_record(
            event_type="storage.reseal",
            actor=actor,
            outcome=Outcome.ERROR if problems else Outcome.SUCCESS,
            error_code="reseal" if problems else "",
            error_description=" ".join(problems),
            details=summary,
        )
    return summary
