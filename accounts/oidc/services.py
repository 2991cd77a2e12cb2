"""SSO writes: identities, roles applied to users, sign-in, link, sign-out.

Every SSO event goes to ``audit.services.audit_record``: auth.sso.success,
auth.sso.failure (with the reason code), auth.sso.roles, auth.sso.linked,
auth.sso.user_created, auth.sso.logout.
"""

import base64
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import jwt
import requests
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django_otp import devices_for_user

from accounts import api_tokens
from accounts import services as account_services
from accounts.models import User
from accounts.oidc import errors, roles
from accounts.oidc.models import Identity, IdPDevice
from accounts.policy import otp_required_for
from audit.models import Outcome
from audit.services import audit_record

# Session keys of single sign-on.
ID_TOKEN, EXPIRES = "oidc_id_token", "oidc_id_token_expiration"
LINK, AMR = "accounts.oidc.link", "accounts.oidc.amr"
# How long a link started from the security page stays open.
LINK_SECONDS = 600


@dataclass
class SSOResult:
    claims: dict
    id_token: str


def _claims_summary(claims: dict) -> dict:
    return {
        "issuer": claims.get("iss", ""),
        "subject": claims.get("sub", ""),
        "roles": roles.roles_from_claims(claims),
        "amr": claims.get("amr") or [],
        "acr": claims.get("acr") or "",
        "idp": claims.get("identity_provider", ""),
    }


def failure_record(
    *, request: HttpRequest, code: str, user=None, claims: dict | None = None
) -> None:
    audit_record(
        event_type="auth.sso.failure",
        request=request,
        actor=user,
        outcome=Outcome.FAILURE,
        error_code=code,
        error_description=errors.MESSAGES.get(code, errors.SSO_FAILED),
        details=_claims_summary(claims) if claims else {},
    )


@transaction.atomic
def roles_apply(*, request: HttpRequest | None, user: User, claim_roles: list) -> None:
    """Make the user's SSO-managed groups and staff flag match the roles.

    Groups outside the mapping (given by hand in the admin) are left alone.
    """
    wanted = roles.groups_for(claim_roles)
    managed = roles.managed_groups()
    current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
    added, removed = sorted(wanted - current), sorted(current - wanted)
    for name in added:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    staff = roles.staff_for(claim_roles)
    staff_changed = user.is_staff != staff and not user.is_superuser
    if staff_changed:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    for cache in ("_global_roles", "_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache, None)
    audit_record(
        event_type="auth.sso.roles",
        request=request,
        actor=user,
        target=user,
        details={
            "roles": claim_roles,
            "groups_added": added,
            "groups_removed": removed,
            "is_staff": user.is_staff,
            "staff_changed": staff_changed,
        },
    )


def identity_resolve(
    *, request: HttpRequest, claims: dict, link_to=None, refresh_token: str = ""
) -> User:
    """The user these verified claims stand for; raise SSOFailure if none.

    Found by (issuer, subject). A new identity creates an account only from
    a verified email that no account has; an existing account is linked
    only by its signed-in owner (``link_to``), never through an email claim.
    """
    issuer, subject = claims["iss"], str(claims["sub"])
    claim_roles = roles.roles_from_claims(claims)
    identity = (
        Identity.objects.select_related("user")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    user = identity.user if identity is not None else None
    if link_to is not None and user is not None and user.pk != link_to.pk:
        raise errors.SSOFailure("identity_taken", user=link_to)
    if not roles.allowed_roles(claim_roles):
        if user is not None:
            # Access removed at the IdP: take the groups away now, so no
            # other way in (API tokens, other sessions) keeps them.
            roles_apply(request=request, user=user, claim_roles=claim_roles)
            identity.roles = claim_roles
            identity.roles_checked_at = timezone.now()
            identity.save(update_fields=["roles", "roles_checked_at"])
            api_tokens.tokens_revoke_sso(
                identity=identity, request=request, reason="sso_roles_removed"
            )
        raise errors.SSOFailure("no_allowed_role", user=user or link_to)
    with transaction.atomic():
        if identity is None:
            if link_to is not None:
                user = link_to
                identity = _identity_create(claims, user)
                audit_record(
                    event_type="auth.sso.linked",
                    request=request,
                    actor=user,
                    target=user,
                    details=_claims_summary(claims),
                )
            else:
                user = _user_create(request, claims)
                identity = _identity_create(claims, user)
        if not user.is_active:
            raise errors.SSOFailure("inactive", user=user)
        identity.email = str(claims.get("email") or "")[:254]
        identity.email_verified = claims.get("email_verified") is True
        identity.roles = claim_roles
        identity.amr = claims.get("amr") if isinstance(claims.get("amr"), list) else []
        identity.acr = str(claims.get("acr") or "")[:64]
        identity.last_login_at = identity.roles_checked_at = timezone.now()
        if refresh_token:
            identity.refresh_token = _seal(refresh_token)
        identity.save()
        roles_apply(request=request, user=user, claim_roles=claim_roles)
    return user


def _identity_create(claims: dict, user: User) -> Identity:
    return Identity.objects.create(
        user=user, issuer=claims["iss"], subject=str(claims["sub"])
    )


def _user_create(request: HttpRequest, claims: dict) -> User:
    email = claims.get("email")
    if not email or claims.get("email_verified") is not True:
        raise errors.SSOFailure("email_unverified")
    if User.objects.filter(email__iexact=email).exists():
        raise errors.SSOFailure("link_required")
    user = User.objects.create_user(
        email=email,
        password=None,
        full_name=str(claims.get("name") or "")[:150],
        email_verified_at=timezone.now(),
    )
    audit_record(
        event_type="auth.sso.user_created",
        request=request,
        actor=user,
        target=user,
        details=_claims_summary(claims),
    )
    return user


def sso_login(*, request: HttpRequest, user: User, result: SSOResult) -> str:
    """Sign the user in (or refresh their session); return where to go next.

    Staff need a second factor: the IdP's ``amr`` counts when it names one;
    otherwise our own TOTP step follows, or enrolment does.
    """
    claims = result.claims
    refreshing = request.user.is_authenticated and request.user.pk == user.pk
    amr = claims.get("amr") if isinstance(claims.get("amr"), list) else []
    next_step = ""
    if refreshing:
        user = request.user
    else:
        device = None
        if otp_required_for(user) and roles.mfa_done(amr):
            device = IdPDevice.objects.get_or_create(
                user=user, defaults={"name": "Identity provider"}
            )[0]
        elif any(devices_for_user(user, confirmed=True)):
            # Our own second step: the accounts OTP page finishes the login.
            request.session.cycle_key()
            request.session[account_services.PENDING] = {
                "user": user.pk,
                "backend": user.backend,
                "at": time.time(),
            }
            next_step = reverse("accounts:login-otp")
        if not next_step:
            account_services.login_complete(request=request, user=user, device=device)
    request.session[ID_TOKEN] = result.id_token
    request.session[AMR] = amr
    request.session[EXPIRES] = time.time() + settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS
    audit_record(
        event_type="auth.sso.refresh" if refreshing else "auth.sso.success",
        request=request,
        actor=user,
        details={**_claims_summary(claims), "next_step": next_step or "none"},
    )
    return next_step


def link_start(*, request: HttpRequest, user: User) -> None:
    """Open a link of an SSO identity to the signed-in account for a while."""
    request.session[LINK] = {"user": user.pk, "at": time.time()}


def link_target(request: HttpRequest) -> User | None:
    """The signed-in account an SSO callback may link to, if one was opened."""
    intent = request.session.pop(LINK, None)
    user = request.user
    if not intent or not user.is_authenticated or intent.get("user") != user.pk:
        return None
    if time.time() - intent.get("at", 0) > LINK_SECONDS:
        return None
    return user


def logout_url(*, request: HttpRequest) -> str:
    """End the local session; return the IdP's end-session URL if SSO was used.

    The IdP's URL carries ``id_token_hint`` so Keycloak ends its session
    without asking, then sends the browser back to our login page.
    """
    id_token = request.session.get(ID_TOKEN)
    user = request.user if request.user.is_authenticated else None
    account_services.user_logout(request=request)
    if not id_token:
        return reverse(settings.LOGOUT_REDIRECT_URL)
    audit_record(event_type="auth.sso.logout", request=request, actor=user)
    query = urlencode(
        {
            "id_token_hint": id_token,
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "post_logout_redirect_uri": request.build_absolute_uri(
                reverse(settings.LOGOUT_REDIRECT_URL)
            ),
        }
    )
    return f"{settings.OIDC_OP_LOGOUT_ENDPOINT}?{query}"


def session_identity(request: HttpRequest) -> Identity | None:
    """The SSO identity this session signed in with, or None (a password
    sign-in). The ID token is the one verified at sign-in, kept server-side."""
    id_token = request.session.get(ID_TOKEN) if hasattr(request, "session") else None
    if not id_token or not request.user.is_authenticated:
        return None
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return Identity.objects.filter(
        user=request.user, issuer=claims.get("iss"), subject=str(claims.get("sub"))
    ).first()


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"kreo-oidc-refresh"
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _seal(token: str) -> str:
    """A refresh token as stored: encrypted under a key derived from the
    secret key, so a database copy alone does not hold a usable grant."""
    return _fernet().encrypt(token.encode()).decode()


def _unseal(stored: str) -> str:
    try:
        return _fernet().decrypt(stored.encode()).decode() if stored else ""
    except InvalidToken:
        return ""  # another secret key: as good as no grant


def _stale(identity: Identity) -> bool:
    checked = identity.roles_checked_at or identity.last_login_at
    age = settings.OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS
    return checked is None or (timezone.now() - checked).total_seconds() > age


def _roles_reread(identity: Identity) -> str:
    """Read the roles again at the provider with the identity's refresh token.

    Returns "" once done, ``sso_session_ended`` when the provider refuses the
    grant (or there is none). Raises ``SSOUnconfirmed`` when the provider
    cannot be asked now: the caller refuses without concluding anything.
    """
    from accounts.oidc.backends import KreoOIDCBackend

    with transaction.atomic():
        locked = Identity.objects.select_for_update().get(pk=identity.pk)
        if not _stale(locked):  # another request just read them
            identity.roles = locked.roles
            identity.roles_checked_at = locked.roles_checked_at
            return ""
        grant = _unseal(locked.refresh_token)
        if not grant:
            return "sso_session_ended"
        try:
            claims, following = KreoOIDCBackend().claims_for_refresh(grant)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status not in (400, 401):
                raise SSOUnconfirmed from exc
            locked.refresh_token = ""  # nosec B105 - the spent grant cleared
            locked.save(update_fields=["refresh_token"])
            return "sso_session_ended"
        except (requests.RequestException, errors.SSOFailure, ValueError) as exc:
            raise SSOUnconfirmed from exc
        if (claims.get("iss"), str(claims.get("sub"))) != (
            locked.issuer,
            locked.subject,
        ):
            raise SSOUnconfirmed
        claim_roles = roles.roles_from_claims(claims)
        locked.roles, locked.roles_checked_at = claim_roles, timezone.now()
        locked.refresh_token = _seal(following)
        locked.save(update_fields=["roles", "roles_checked_at", "refresh_token"])
        roles_apply(request=None, user=locked.user, claim_roles=claim_roles)
        identity.roles = claim_roles
        identity.roles_checked_at = locked.roles_checked_at
    return ""


class SSOUnconfirmed(Exception):
    """The provider cannot be asked about the roles right now."""


def identity_access_problem(identity: Identity | None) -> str:
    """Why an API token issued under ``identity`` may no longer be used, as a
    reason code (``accounts.api_tokens.WHY``), or "" when it may.

    The roles are those last read at the provider: at sign-in, at each
    session refresh, and here, with the refresh grant, once they are older
    than ``KREO_OIDC_REFRESH_SECONDS``. ``SSOUnconfirmed`` when they are
    older and the provider cannot be asked.
    """
    if identity is None:
        return "sso_unlinked"
    if _stale(identity):
        if problem := _roles_reread(identity):
            return problem
    if not roles.allowed_roles(identity.roles or []):
        return "sso_roles_removed"
    return ""
