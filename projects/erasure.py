"""Secure deletion of projects and files, each with a sanitisation certificate.

A project is erased cryptographically: a tombstone goes to the erasure ledger
(outside the database, see ``projects.keys``), its data key row is deleted
in the same transaction as its rows, and once that commits every version of
every object it stored is deleted. Without the data key the ciphertext is
unreadable even where a copy survives. A single file shares its project's
key, so it is erased by deleting every version of its object (and its
tombstone makes a restore drop it again).

The tombstone is written first: when the ledger refuses it (``LedgerError``)
nothing is erased, the refusal is audited (``error_code`` ``erasure_ledger``)
and the error goes to the caller, whose interface shows its message.
"""

from __future__ import annotations

import hashlib
from functools import partial

from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from projects import keys
from projects.ledger import LedgerError
from projects.models import (
    ErasureCertificate,
    ErasureMethod,
    Project,
    ProjectFile,
    ProjectKey,
)
from projects.storage import blob_delete

LEDGER_REFUSED = "erasure_ledger"  # the error_code of a refused erasure


def _label(actor) -> str:
    if actor is None:
        return "system"
    return getattr(actor, "email", "") or f"user {actor.pk}"


def _requested_by(actor):
    return actor if getattr(actor, "pk", None) else None


def erasure_refused(
    *, actor, target, error: LedgerError, request=None, via: str = "user"
) -> None:
    """Audit an erasure the ledger refused: nothing was erased.

    Called here, and by an interface whose own transaction rolled the first
    record back with everything else (the admin's delete view).
    """
    kind = "project" if isinstance(target, Project) else "file"
    audit_record(
        event_type=f"{kind}.delete",
        actor=actor,
        actor_label="" if actor is not None else "system",
        request=request,
        target=target,
        outcome=Outcome.ERROR,
        error_code=LEDGER_REFUSED,
        error_description=str(error),
        details={"via": via, "erased": False},
    )


def _finish(certificate_id, storage, names: list[str]) -> None:
    """Delete the objects (every version), then complete the certificate."""
    removed: list[str] = []
    for name in names:
        removed.extend(blob_delete(storage, name))
    certificate = ErasureCertificate.objects.get(pk=certificate_id)
    certificate.objects_removed = removed
    certificate.completed_at = timezone.now()
    certificate.save(update_fields=["objects_removed", "completed_at"])
    audit_record(
        event_type="erasure.certificate",
        actor=certificate.requested_by,
        target=certificate,
        details={
            "certificate": str(certificate.pk),
            "subject": f"{certificate.subject_type} {certificate.subject_id}",
            "method": certificate.method,
            "key_destroyed": certificate.key_destroyed,
            "objects_removed": len(removed),
        },
    )


def _object_names(files) -> list[str]:
    """The storage keys of ``files``: each file's object and its thumbnail's."""
    pairs = files.values_list("blob", "thumbnail")
    return [name for pair in pairs for name in pair if name]


def project_erase(
    *, actor, project: Project, request=None, reason: str = "", via: str = "user"
) -> ErasureCertificate:
    """Destroy the project's data key, delete its rows, then its objects."""
    storage = ProjectFile._meta.get_field("blob").storage
    names = _object_names(project.files.all())
    key_row = ProjectKey.objects.filter(pk=project.pk).first()
    fingerprint = (
        f"{key_row.kek_id}:{hashlib.sha256(bytes(key_row.wrapped)).hexdigest()[:16]}"
        if key_row is not None
        else ""
    )
    try:
        path = keys.ledger_record(
            kind="project", object_id=project.pk, details={"key": fingerprint}
        )
    except LedgerError as exc:
        erasure_refused(
            actor=actor, target=project, error=exc, request=request, via=via
        )
        raise
    try:
        with transaction.atomic():
            ProjectKey.objects.filter(pk=project.pk).delete()
            certificate = ErasureCertificate.objects.create(
                subject_type="project",
                subject_id=str(project.pk),
                subject_label=project.name,
                method=ErasureMethod.CRYPTO_ERASE,
                requested_by=_requested_by(actor),
                requested_by_label=_label(actor),
                reason=reason or via,
                key_destroyed=fingerprint or "no key (no encrypted files)",
                objects_planned=names,
            )
            audit_record(
                event_type="project.delete",
                actor=actor,
                request=request,
                target=project,
                details={
                    "name": project.name,
                    "files": len(names),
                    "via_admin": via == "admin",
                    "via": via,
                    "certificate": str(certificate.pk),
                    "method": ErasureMethod.CRYPTO_ERASE.value,
                },
            )
            project.delete()
            transaction.on_commit(partial(_finish, certificate.pk, storage, names))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return certificate


def file_erase(*, actor, item: ProjectFile, request=None, via: str = "user"):
    """Delete the file's row, then every version of its object and of its
    thumbnail's (read under the row's lock: a thumbnail task that finishes
    meanwhile either is seen here or finds no row and deletes its own)."""
    storage = item.blob.storage
    try:
        path = keys.ledger_record(
            kind="file", object_id=item.pk, details={"project": str(item.project_id)}
        )
    except LedgerError as exc:
        erasure_refused(actor=actor, target=item, error=exc, request=request, via=via)
        raise
    try:
        with transaction.atomic():
            names = _object_names(
                ProjectFile.objects.select_for_update().filter(pk=item.pk)
            )
            certificate = ErasureCertificate.objects.create(
                subject_type="file",
                subject_id=str(item.pk),
                subject_label=item.name,
                method=ErasureMethod.DELETE,
                requested_by=_requested_by(actor),
                requested_by_label=_label(actor),
                reason=via,
                objects_planned=names,
            )
            audit_record(
                event_type="file.delete",
                actor=actor,
                request=request,
                target=item,
                details={
                    "project": str(item.project_id),
                    "name": item.name,
                    "certificate": str(certificate.pk),
                },
            )
            item.delete()
            transaction.on_commit(partial(_finish, certificate.pk, storage, names))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return certificate
