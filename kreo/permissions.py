"""Global roles: who someone is across the whole site.

The other half of the one permission layer: project roles are in
``projects.permissions`` (which re-exports these), global roles here, where
every app, ``audit/`` included, may ask them.
"""

from django.db import models

# Who someone is across the whole site, as Keycloak roles grant it through
# groups (accounts.oidc.roles) or staff set it by hand. A global role never
# opens a project: only membership does (projects.permissions).


class GlobalRole(models.TextChoices):
    ADMIN = "admin", "Staff in the Admin group: the admin site, no audit trail"
    AUDITOR = "auditor", "The Auditor group: read-only audit trail in the admin"
    USER = "user", "Signed in: the projects they are a member of"


ADMIN_GROUP = "Admin"
AUDITOR_GROUP = "Auditor"  # audit.apps gives it its permissions
# The Admin group's Django permissions: app label -> actions ("*": all). No
# audit app (auditors' duty); users only viewed, so an admin cannot make
# anyone (themselves included) superuser or auditor; no 2FA devices, whose
# admin shows a device's secret as a QR code (resetting 2FA: superusers).
ADMIN_GROUP_PERMISSIONS: dict[str, str | tuple[str, ...]] = {
    "projects": "*",
    "backups": "*",
    "django_celery_beat": "*",
    "knox": "*",
    "status": "*",
    "monitoring": "*",
    "accounts": ("view",),
}


def global_roles(user) -> frozenset[str]:
    """The global roles of ``user`` (empty when signed out or inactive)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    cache = getattr(user, "_global_roles", None)
    if cache is None:
        groups = set(user.groups.values_list("name", flat=True))
        roles = {GlobalRole.USER.value}
        if user.is_superuser or (user.is_staff and ADMIN_GROUP in groups):
            roles.add(GlobalRole.ADMIN.value)
        if user.is_superuser or AUDITOR_GROUP in groups:
            roles.add(GlobalRole.AUDITOR.value)
        cache = user._global_roles = frozenset(roles)
    return cache


def has_global_role(user, role: str) -> bool:
    return role in global_roles(user)
