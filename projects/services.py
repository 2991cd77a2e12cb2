"""Every write to projects, members and files, each with its audit event."""

import hashlib
import logging
from collections.abc import Iterator

from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import audit_record
from projects import crypto, erasure, invitations, thumbnails, uploads, validators
from projects.models import (
    ErasureCertificate,
    Membership,
    Project,
    ProjectFile,
    Role,
)
from projects.permissions import Action, forget_roles, require
from projects.storage import blob_delete, blob_store

LAST_OWNER = "A project needs at least one owner: add another owner first."
NAME_REQUIRED = "A project needs a name."

logger = logging.getLogger(__name__)


def _clean_project_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": NAME_REQUIRED}, code="name_required")
    if len(name) > 200:
        raise ValidationError({"name": "At most 200 characters."}, code="too_long")
    return validators.refuse_control_characters(
        name, message=validators.PROJECT_NAME_CONTROL, field="name"
    )


def _clean_description(description: str | None) -> str:
    return validators.refuse_control_characters(
        (description or "").strip()[:2000],
        message=validators.DESCRIPTION_CONTROL,
        field="description",
        allow=validators.LINE_BREAKS_AND_TABS,
    )


@transaction.atomic
def project_create(*, actor, name: str, description: str = "", request=None) -> Project:
    """Create a project with ``actor`` as its first owner."""
    project = Project.objects.create(
        name=_clean_project_name(name),
        description=_clean_description(description),
        created_by=actor,
    )
    Membership.objects.create(project=project, user=actor, role=Role.OWNER)
    forget_roles(actor)
    audit_record(
        event_type="project.create", actor=actor, request=request, target=project
    )
    return project


@transaction.atomic
def project_update(
    *,
    actor,
    project: Project,
    name: str | None = None,
    description: str | None = None,
    request=None,
) -> Project:
    require(actor, Action.EDIT, project)
    changed = {}
    if name is not None and name.strip() != project.name:
        changed["name"] = [project.name, _clean_project_name(name)]
        project.name = changed["name"][1]
    if description is not None and description.strip() != project.description:
        changed["description"] = True
        project.description = _clean_description(description)
    if changed:
        project.save()
        audit_record(
            event_type="project.update",
            actor=actor,
            request=request,
            target=project,
            details={"changed": changed},
        )
    return project


def project_delete(
    *, actor, project: Project, request=None, staff: bool = False, reason: str = ""
) -> ErasureCertificate:
    """Erase the project: destroy its data key, delete its rows, then its objects.

    ``staff`` is for the admin, whose own permissions already decided. Returns
    the sanitisation certificate (completed once the objects are gone).
    """
    if not staff:
        require(actor, Action.DELETE, project)
    return erasure.project_erase(
        actor=actor,
        project=project,
        request=request,
        reason=reason,
        via="admin" if staff else "user",
    )


def projects_set_aside_for_leaving_owner(
    *, user_id, at=None, using: str = "default"
) -> list[str]:
    """Put aside the live projects that ``user_id`` alone owns; return their ids.

    For an account being deleted (``accounts``), and again when a restore
    brings that account back: the projects disappear for every member at once
    and the purge erases them ``KREO_PURGE_AFTER_DAYS`` after ``at``.
    Projects with another owner stay, without that member. The caller's own
    audit event names the projects.
    """
    owned = Project.objects.using(using).filter(
        memberships__user_id=user_id, memberships__role=Role.OWNER, deleted_at=None
    )
    sole = [p.pk for p in owned if p.memberships.filter(role=Role.OWNER).count() == 1]
    Project.objects.using(using).filter(pk__in=sole).update(
        deleted_at=at or timezone.now()
    )
    return [str(pk) for pk in sole]


def _hashed(upload: UploadedFile, sha) -> Iterator[bytes]:
    upload.seek(0)
    for chunk in upload.chunks(crypto.CHUNK):
        sha.update(chunk)
        yield chunk


def project_file_upload(
    *,
    actor,
    project: Project,
    upload: UploadedFile,
    name: str | None = None,
    request=None,
) -> ProjectFile:
    """Check and store one file. Nothing is stored unless every check passes."""
    require(actor, Action.UPLOAD, project)
    display = uploads.sanitize_name(name if name else upload.name)
    kind = uploads.inspect(upload, name=display, size=upload.size)
    item = ProjectFile(
        project=project,
        name=display,
        kind=kind.name,
        content_type=kind.content_type,
        size=upload.size,
        uploaded_by=actor,
    )
    # The object is written (encrypted, hashed in the same pass) before the
    # row; if the row fails, remove it.
    sha = hashlib.sha256()
    blob_store(item, _hashed(upload, sha))
    item.sha256 = digest = sha.hexdigest()
    try:
        with transaction.atomic():
            item.save()
            audit_record(
                event_type="file.upload",
                actor=actor,
                request=request,
                target=item,
                details={
                    "project": str(project.pk),
                    "name": display,
                    "size": item.size,
                    "sha256": digest,
                },
            )
    except Exception:
        _discard(item)
        raise
    thumbnails.thumbnail_queue(item)
    return item


def _discard(item: ProjectFile) -> None:
    """Remove the object of a row that was not saved; if S3 went down in
    between, name the orphan in the log for clean-up (the row's error wins)."""
    try:
        blob_delete(item.blob.storage, item.blob.name)
    except Exception:
        logger.exception("orphan object left in storage: %s", item.blob.name)


@transaction.atomic
def project_file_rename(
    *, actor, item: ProjectFile, name: str, request=None
) -> ProjectFile:
    require(actor, Action.RENAME_FILE, item.project)
    new = uploads.sanitize_name(name)
    if uploads.kind_for_name(new).name != item.kind:
        raise ValidationError(
            {"name": "The new name must keep the file's type."}, code="kind_change"
        )
    old, item.name = item.name, new
    item.save(update_fields=["name"])
    audit_record(
        event_type="file.rename",
        actor=actor,
        request=request,
        target=item,
        details={"from": old, "to": new},
    )
    return item


def project_file_delete(
    *, actor, item: ProjectFile, request=None, staff: bool = False
) -> ErasureCertificate:
    """Delete the file's row, then every version of its object (certificate)."""
    if not staff:
        require(actor, Action.DELETE_FILE, item.project)
    return erasure.file_erase(
        actor=actor, item=item, request=request, via="admin" if staff else "user"
    )


def project_file_download_record(
    *, actor, item: ProjectFile, request=None, inline: bool = False
) -> None:
    """Record a file read: a download, or a preview shown in the browser."""
    require(actor, Action.VIEW, item.project)
    details = {"project": str(item.project_id), "size": item.size}
    if inline:
        details["inline"] = True
    audit_record(
        event_type="file.download",
        actor=actor,
        request=request,
        target=item,
        details=details,
    )


def project_file_download_failed(
    *, actor, item: ProjectFile, error_code: str, description: str, request=None
) -> None:
    """Record a download refused because the stored object cannot be trusted."""
    audit_record(
        event_type="file.download",
        actor=actor,
        request=request,
        target=item,
        outcome=Outcome.ERROR,
        error_code=error_code,
        error_description=description,
        details={"project": str(item.project_id), "size": item.size},
    )


def _owners_left(project: Project, without: Membership) -> int:
    return project.memberships.filter(role=Role.OWNER).exclude(pk=without.pk).count()


@transaction.atomic
def membership_change_role(
    *, actor, membership: Membership, role: str, request=None
) -> Membership:
    project = membership.project
    require(actor, Action.MANAGE_MEMBERS, project)
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of {', '.join(Role.values)}."})
    locked = Membership.objects.select_for_update().get(pk=membership.pk)
    if (
        locked.role == Role.OWNER
        and role != Role.OWNER
        and not _owners_left(project, locked)
    ):
        raise ValidationError({"role": LAST_OWNER}, code="last_owner")
    old, locked.role = locked.role, role
    locked.save(update_fields=["role"])
    forget_roles(actor)
    audit_record(
        event_type="project.member.role",
        actor=actor,
        request=request,
        target=project,
        details={"user": locked.user_id, "from": old, "to": role},
    )
    if old != role and locked.user_id != actor.pk:
        invitations.member_notice_queue(
            request=request,
            user_id=locked.user_id,
            project=project,
            kind="role",
            role=role,
        )
    return locked


@transaction.atomic
def membership_remove(*, actor, membership: Membership, request=None) -> None:
    project = membership.project
    require(actor, Action.MANAGE_MEMBERS, project)
    locked = Membership.objects.select_for_update().get(pk=membership.pk)
    if locked.role == Role.OWNER and not _owners_left(project, locked):
        raise ValidationError({"role": LAST_OWNER}, code="last_owner")
    audit_record(
        event_type="project.member.remove",
        actor=actor,
        request=request,
        target=project,
        details={"user": locked.user_id, "role": locked.role},
    )
    if locked.user_id != actor.pk:
        invitations.member_notice_queue(
            request=request, user_id=locked.user_id, project=project, kind="removed"
        )
    locked.delete()
    forget_roles(actor)
