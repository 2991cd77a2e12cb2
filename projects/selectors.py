from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from projects.models import (
    ErasureCertificate,
    Invitation,
    Membership,
    Project,
    ProjectFile,
    ProjectKey,
)
from projects.permissions import NOT_FOUND, require

# Orders a person can pick on the lists (the first is the default).
PROJECT_SORTS = {
    "name": ("name", "created_at"),
    "updated": ("-updated_at", "name"),
    "files": ("-file_count", "name"),
}
FILE_SORTS = {
    "name": ("name", "uploaded_at"),
    "newest": ("-uploaded_at", "name"),
    "size": ("-size", "name"),
    "type": ("kind", "name"),
}


def project_list(*, user, query: str = "", sort: str = "name") -> QuerySet[Project]:
    """Projects ``user`` is a member of, each with ``role`` and ``file_count``,
    whose name contains ``query``, in the order named by ``sort``."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")
    projects = Project.objects.filter(memberships__user=user, deleted_at=None)
    if query:
        projects = projects.filter(name__icontains=query)
    return projects.annotate(
        role=Subquery(role[:1]), file_count=Count("files", distinct=True)
    ).order_by(*PROJECT_SORTS.get(sort, PROJECT_SORTS["name"]))


def project_get(*, user, project_id, action: str) -> Project:
    """The project, if ``user`` may do ``action`` to it (404 / 403 otherwise)."""
    try:
        # A project put aside for purging is gone for everyone.
        project = Project.objects.get(pk=project_id, deleted_at=None)
    except (Project.DoesNotExist, ValueError, ValidationError):
        raise Http404(NOT_FOUND) from None
    require(user, action, project)
    return project


def project_file_get(*, user, project_id, file_id, action: str) -> ProjectFile:
    project = project_get(user=user, project_id=project_id, action=action)
    try:
        return project.files.get(pk=file_id)
    except ProjectFile.DoesNotExist:
        raise Http404(NOT_FOUND) from None


def project_file_list(
    *, project: Project, query: str = "", sort: str = "name"
) -> QuerySet[ProjectFile]:
    files = project.files.select_related("uploaded_by")
    if query:
        files = files.filter(name__icontains=query)
    return files.order_by(*FILE_SORTS.get(sort, FILE_SORTS["name"]))


def membership_list(*, project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__email")


def membership_get(*, project: Project, membership_id) -> Membership:
    try:
        return project.memberships.select_related("user").get(pk=membership_id)
    except (Membership.DoesNotExist, ValueError):
        raise Http404("Member not found.") from None


def invitation_list(*, project: Project) -> QuerySet[Invitation]:
    """Pending invitations of ``project`` (expired ones too, until revoked)."""
    return project.invitations.filter(accepted_at=None, revoked_at=None).order_by(
        "email"
    )


def invitation_get(*, project: Project, invitation_id) -> Invitation:
    try:
        return project.invitations.get(pk=invitation_id)
    except (Invitation.DoesNotExist, ValueError):
        raise Http404("Invitation not found.") from None


def erasure_certificates_between(*, start, end) -> QuerySet[ErasureCertificate]:
    """Erasures requested, or completed, in ``[start, end)``, oldest first."""
    return ErasureCertificate.objects.filter(
        Q(created_at__gte=start, created_at__lt=end)
        | Q(completed_at__gte=start, completed_at__lt=end)
    ).order_by("created_at")


# Reads for the compliance checks ---------------------------------------------------


def file_format_current() -> str:
    """The format new files are stored in (``ProjectFile.encryption``)."""
    from projects.storage import FORMAT

    return FORMAT


def files_by_encryption() -> dict[str, int]:
    """How many stored files (and thumbnails) each storage format holds
    (``""``: stored before encryption), over every project, put aside or not."""
    counts = dict(
        ProjectFile.objects.order_by().values_list("encryption").annotate(n=Count("pk"))
    )
    return {fmt: n for fmt, n in counts.items()}


def files_not_in_format(*, fmt: str, limit: int = 20) -> list[dict]:
    """Up to ``limit`` files not stored in ``fmt``: id, project, format."""
    return [
        {"id": str(pk), "project_id": str(project), "encryption": enc}
        for pk, project, enc in ProjectFile.objects.exclude(encryption=fmt)
        .order_by("uploaded_at")
        .values_list("pk", "project_id", "encryption")[:limit]
    ]


def data_keys_by_kek() -> dict[str, int]:
    """How many project data keys each key-encryption key wraps."""
    return dict(
        ProjectKey.objects.order_by().values_list("kek_id").annotate(n=Count("pk"))
    )


def projects_put_aside(*, before) -> list[dict]:
    """Projects deleted (put aside) before ``before`` and not erased yet."""
    return [
        {"id": str(pk), "name": name, "deleted_at": deleted_at}
        for pk, name, deleted_at in Project.objects.filter(deleted_at__lt=before)
        .order_by("deleted_at")
        .values_list("pk", "name", "deleted_at")
    ]


def erasures_unfinished(*, before) -> list[ErasureCertificate]:
    """Erasure certificates opened before ``before`` whose objects are not all
    removed yet (``completed_at`` unset)."""
    return list(
        ErasureCertificate.objects.filter(
            completed_at__isnull=True, created_at__lt=before
        ).order_by("created_at")
    )


def erasures_completed(*, since) -> list[ErasureCertificate]:
    return list(
        ErasureCertificate.objects.filter(completed_at__gte=since).order_by(
            "completed_at"
        )
    )
