"""The one place that says who may do what to a project.

Views, the API, the admin and the tests all ask ``can`` / ``require``. Only
members ever see a project's data: a non-member gets "not found", whatever
global role they hold; staff manage projects through the admin.
"""

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404

from projects.models import Membership, Project, Role


class Action(models.TextChoices):
    VIEW = "view", "See the project, its members and files; download files"
    UPLOAD = "upload", "Upload files"
    RENAME_FILE = "rename_file", "Rename files"
    DELETE_FILE = "delete_file", "Delete files"
    EDIT = "edit", "Rename the project, change its description"
    MANAGE_MEMBERS = "manage_members", "Add, remove and change members"
    DELETE = "delete", "Delete the project"


ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset({Action.VIEW}),
    Role.EDITOR: frozenset({Action.VIEW, Action.UPLOAD, Action.RENAME_FILE}),
    Role.OWNER: frozenset(Action.values),
}

NOT_FOUND = "Project not found."
NOT_ALLOWED = "Your role in this project does not allow that."


def project_role(user, project: Project) -> str | None:
    """Return ``user``'s role in ``project``, or None if not a member."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    cache = getattr(user, "_project_roles", None)
    if cache is None:
        cache = user._project_roles = {}
    if project.pk not in cache:
        cache[project.pk] = (
            Membership.objects.filter(project=project, user=user)
            .values_list("role", flat=True)
            .first()
        )
    return cache[project.pk]


def can(user, action: str, project: Project) -> bool:
    role = project_role(user, project)
    return role is not None and action in ROLE_ACTIONS[role]


def require(user, action: str, project: Project) -> str:
    """Raise 404 for a non-member, 403 for a member whose role forbids it."""
    role = project_role(user, project)
    if role is None:
        raise Http404(NOT_FOUND)
    if action not in ROLE_ACTIONS[role]:
        raise PermissionDenied(NOT_ALLOWED)
    return role


def forget_roles(user) -> None:
    """Drop the per-request role cache after a membership change."""
    if hasattr(user, "_project_roles"):
        del user._project_roles


# Global roles (who someone is across the site) live in kreo.permissions, so
# that audit/ can ask them without importing this app; re-exported here so
# that project and global rules are read from one module.
from kreo.permissions import (  # noqa: E402, F401
    ADMIN_GROUP,
    ADMIN_GROUP_PERMISSIONS,
    AUDITOR_GROUP,
    GlobalRole,
    global_roles,
    has_global_role,
)
