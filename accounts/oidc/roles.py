"""Keycloak roles from claims, and what they grant here. Settings are read at
call time: KREO_OIDC_ROLE_GROUPS, KREO_OIDC_STAFF_ROLES."""

from django.conf import settings

NO_GROUP = "-"


def roles_from_claims(claims: dict) -> list[str]:
    """Realm roles and this client's roles, as Keycloak puts them in tokens."""
    roles: set[str] = set()
    realm = claims.get("realm_access") or {}
    if isinstance(realm, dict):
        roles.update(r for r in realm.get("roles") or [] if isinstance(r, str))
    resource = (claims.get("resource_access") or {}).get(settings.OIDC_RP_CLIENT_ID)
    if isinstance(resource, dict):
        roles.update(r for r in resource.get("roles") or [] if isinstance(r, str))
    return sorted(roles)


def allowed_roles(roles: list[str]) -> list[str]:
    """The roles that let a user in at all."""
    return [r for r in roles if r in settings.KREO_OIDC_ROLE_GROUPS]


def managed_groups() -> set[str]:
    """Groups that SSO roles grant, and so also take away."""
    return {g for g in settings.KREO_OIDC_ROLE_GROUPS.values() if g != NO_GROUP}


def groups_for(roles: list[str]) -> set[str]:
    mapping = settings.KREO_OIDC_ROLE_GROUPS
    return {mapping[r] for r in allowed_roles(roles)} - {NO_GROUP}


def staff_for(roles: list[str]) -> bool:
    return any(r in settings.KREO_OIDC_STAFF_ROLES for r in allowed_roles(roles))


def mfa_done(amr) -> bool:
    """Whether the IdP's amr says a second factor was used."""
    if not isinstance(amr, list):
        return False
    wanted = {v.lower() for v in settings.KREO_OIDC_MFA_AMR}
    return any(isinstance(v, str) and v.lower() in wanted for v in amr)
