"""Re-authentication at the identity provider before an irreversible step.

An account that signs in only through SSO has no password to type again, so
the user signs in again at the provider instead: an authorization request
with ``prompt=login`` and ``max_age=0`` and its own state, nonce and PKCE
verifier, kept apart from sign-in's (``oidc_states``). It comes back to the
usual callback, the one redirect URI registered at Keycloak.

The ID token must pass the backend's full checks (signature from the JWKS,
issuer, audience, expiry, nonce), name the subject linked to the signed-in
user, and carry an ``auth_time`` no older than the request and than
KREO_SSO_REAUTH_SECONDS: a provider that skipped the login is refused.

Then a marker goes into the session, bound to the user, timestamped, with a
random id. ``reauth_consume`` takes it once: the id is recorded as spent in
the cache, so even a session restored to an earlier state cannot use it
again. Every step goes to the audit trail as ``auth.sso.reauth``.
"""

import secrets
import time
from urllib.parse import urlencode

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.urls import reverse
from django.utils.crypto import get_random_string
from mozilla_django_oidc.utils import absolutify, generate_code_challenge

from accounts.models import User
from accounts.oidc import errors
from accounts.oidc.backends import KreoOIDCBackend
from accounts.oidc.models import Identity
from audit.models import Outcome
from audit.services import audit_record

# Session keys: flows started (state -> entry) and the marker of success.
PENDING, MARKER = "accounts.oidc.reauth.pending", "accounts.oidc.reauth.done"
# Cache key prefix of spent markers.
SPENT = "accounts.oidc.reauth.spent:"
# How long the user may take to sign in at the provider.
PENDING_SECONDS = 600
# Flows open at once in one session (the oldest is dropped).
PENDING_MAX = 5
EVENT = "auth.sso.reauth"


def _record(request, user, *, step: str, code: str = "", details=None) -> None:
    user = user if user is not None and user.is_authenticated else None
    audit_record(
        event_type=EVENT,
        request=request,
        actor=user,
        target=user,
        outcome=Outcome.DENIED if code else Outcome.SUCCESS,
        error_code=code,
        error_description=errors.MESSAGES.get(code, errors.REAUTH_FAILED)
        if code
        else "",
        details={"step": step, **(details or {})},
    )


def reauth_available(user: User, subject: str | None = None) -> bool:
    """Whether ``user`` has an identity at the configured provider (with
    ``subject``, when given) to confirm a step with."""
    if not settings.KREO_OIDC_ENABLED or not user.is_authenticated:
        return False
    linked = Identity.objects.filter(user=user, issuer=settings.KREO_OIDC_ISSUER)
    if subject is not None:
        linked = linked.filter(subject=subject)
    return linked.exists()


def reauth_start(*, request: HttpRequest, user: User, next_url: str) -> str:
    """Open a re-authentication for ``user``; return the provider's URL.

    Raise SSOFailure("reauth_not_linked") for an account without SSO: a
    password account must not swap its password for someone's IdP login.
    """
    if not reauth_available(user):
        _record(request, user, step="start", code="reauth_not_linked")
        raise errors.SSOFailure("reauth_not_linked", user=user)
    state = get_random_string(32)
    nonce = get_random_string(32)
    verifier = secrets.token_urlsafe(64)
    pending = dict(request.session.get(PENDING) or {})
    for old in sorted(pending, key=lambda s: pending[s]["at"])[: -PENDING_MAX + 1]:
        del pending[old]
    pending[state] = {
        "user": user.pk,
        "nonce": nonce,
        "code_verifier": verifier,
        "at": time.time(),
        "next": next_url,
    }
    request.session[PENDING] = pending
    _record(request, user, step="start")
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.OIDC_RP_CLIENT_ID,
            "redirect_uri": absolutify(
                request, reverse("oidc_authentication_callback")
            ),
            "scope": settings.OIDC_RP_SCOPES,
            "state": state,
            "nonce": nonce,
            "code_challenge": generate_code_challenge(verifier, "S256"),
            "code_challenge_method": "S256",
            "prompt": "login",
            "max_age": "0",
        }
    )
    return f"{settings.OIDC_OP_AUTHORIZATION_ENDPOINT}?{query}"


def reauth_is_pending(request: HttpRequest, state: str) -> bool:
    """Whether ``state`` belongs to a re-authentication this session started."""
    return bool(state) and state in (request.session.get(PENDING) or {})


def reauth_finish(*, request: HttpRequest) -> str:
    """Check the provider's answer; set the marker; return where to go next.

    The state is spent first, whatever follows. Raise SSOFailure (audited,
    the session left as it was) when anything does not match.
    """
    pending = dict(request.session.get(PENDING) or {})
    entry = pending.pop(request.GET.get("state", ""))
    request.session[PENDING] = pending
    user = request.user
    try:
        claims = _claims(request, entry)
    except errors.SSOFailure as exc:
        exc.next_url = entry["next"]
        exc.user = user if user.is_authenticated else None
        _record(request, user, step="callback", code=exc.code)
        raise
    marker = {
        "id": secrets.token_urlsafe(16),
        "user": user.pk,
        "sub": str(claims["sub"]),
        "at": time.time(),
    }
    request.session[MARKER] = marker
    _record(
        request,
        user,
        step="callback",
        details={"subject": marker["sub"], "auth_time": claims["auth_time"]},
    )
    return entry["next"]


def _claims(request: HttpRequest, entry: dict) -> dict:
    user = request.user
    if not user.is_authenticated or entry.get("user") != user.pk:
        raise errors.SSOFailure("reauth_wrong_session")
    if time.time() - entry.get("at", 0) > PENDING_SECONDS:
        raise errors.SSOFailure("reauth_expired")
    if request.GET.get("error"):
        raise errors.SSOFailure("provider_error")
    claims, _ = KreoOIDCBackend().claims_for_code(
        request, nonce=entry["nonce"], code_verifier=entry["code_verifier"]
    )
    if not reauth_available(user, subject=str(claims["sub"])):
        raise errors.SSOFailure("reauth_wrong_user")
    auth_time = claims.get("auth_time")
    now, leeway = time.time(), settings.OIDC_LEEWAY_SECONDS
    if (
        not isinstance(auth_time, int)
        or isinstance(auth_time, bool)
        or auth_time < entry["at"] - leeway
        or auth_time > now + leeway
        or now - auth_time > settings.KREO_SSO_REAUTH_SECONDS
    ):
        raise errors.SSOFailure("reauth_stale")
    return claims


def reauth_marker(request: HttpRequest, user: User) -> dict | None:
    """The unspent, unexpired marker for ``user`` in this session, if any.

    For pages to show what comes next; only ``reauth_consume`` may act on it.
    """
    marker = request.session.get(MARKER)
    if not isinstance(marker, dict) or marker.get("user") != user.pk:
        return None
    if time.time() - marker.get("at", 0) > settings.KREO_SSO_REAUTH_SECONDS:
        return None
    return marker


def reauth_discard(*, request: HttpRequest) -> None:
    """Spend the marker without acting on it (one confirmation, one attempt)."""
    marker = request.session.pop(MARKER, None)
    if isinstance(marker, dict) and marker.get("id"):
        cache.add(SPENT + str(marker["id"]), 1, timeout=_spent_ttl())


def _spent_ttl() -> int:
    return settings.KREO_SSO_REAUTH_SECONDS + 60


def reauth_consume(*, request: HttpRequest, user: User) -> None:
    """Take the marker, once, for ``user``; raise SSOFailure if it is not good.

    Checked again here rather than trusted: bound to this user, recent,
    never spent before, and still matching an identity linked to the user.
    """
    marker = request.session.pop(MARKER, None)
    if not isinstance(marker, dict) or not marker.get("id"):
        raise errors.SSOFailure("reauth_missing")
    if marker.get("user") != user.pk:
        raise errors.SSOFailure("reauth_wrong_user")
    if not cache.add(SPENT + str(marker["id"]), 1, timeout=_spent_ttl()):
        raise errors.SSOFailure("reauth_replayed")
    if time.time() - marker.get("at", 0) > settings.KREO_SSO_REAUTH_SECONDS:
        raise errors.SSOFailure("reauth_expired")
    if not reauth_available(user, subject=str(marker.get("sub"))):
        raise errors.SSOFailure("reauth_unlinked")
