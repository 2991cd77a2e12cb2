"""API tokens (django-rest-knox): issue, list, use, revoke.

Knox keeps each token hashed with its creation and expiry; ``ApiTokenUse``
beside it keeps the last use and what the token was issued under. A token
lives ``KREO_API_TOKEN_TTL_SECONDS`` (7 days by default) and is revoked
(deleted, and audited as ``api.token.revoke`` with the reason):

- by its owner, one by one, on the security page or with the token itself;
- when the password is reset or changed, when the account is locked out,
  deactivated or deleted (``tokens_revoke_all``, called by those services);
  a password changed by a path that calls no service (the admin,
  ``changepassword``) is caught at the next use by the session hash;
- when the SSO roles that allowed access are gone: a token asked for from a
  single sign-on session is checked at each use against the identity's roles,
  read again at the provider (refresh grant) once they are older than
  ``KREO_OIDC_REFRESH_SECONDS``; a provider that refuses the grant (sign-in
  ended, user disabled) revokes it too, one that cannot be reached refuses
  the request without revoking (``accounts.oidc.services``).

``TokenAuthentication`` records the last use at most once a minute per token
(``USE_RESOLUTION``), with no extra query on the other requests: the use row
is fetched in knox's own query.
"""

from __future__ import annotations

import binascii
from datetime import timedelta
from hmac import compare_digest

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions

from accounts.models import ApiTokenUse
from audit.models import Outcome
from audit.services import audit_record

# The last use is written at most this often per token.
USE_RESOLUTION = timedelta(seconds=60)
# How many characters of the digest name a token on the security page.
PUBLIC_ID_LENGTH = 16
TOKEN_INVALID = "Invalid token."  # noqa: S105  # nosec B105
REVOKED_AT_USE = "This token was revoked: {why} Sign in and make a new one."
WHY = {
    "password_changed": "the password was changed.",  # nosec B105
    "password_reset": "the password was reset.",  # nosec B105
    "locked_out": "the account was locked out.",
    "deactivated": "the account was deactivated.",
    "sso_roles_removed": "the single sign-on roles that allowed access are gone.",
    "sso_unlinked": "the single sign-on identity it was issued under is gone.",
    "sso_session_ended": "the single sign-on provider ended the sign-in it was "
    "issued under.",
    "account_deleted": "the account was deleted.",
}
ACCOUNT_LOCKED = "The account is locked: this token cannot be used now."
SSO_UNCONFIRMED = (
    "The single sign-on provider cannot confirm your access right now: try "
    "again in a moment."
)


def _ttl() -> timedelta:
    return timedelta(seconds=settings.KREO_API_TOKEN_TTL_SECONDS)


def public_id(token: AuthToken) -> str:
    """How the security page names a token: the start of its digest (the hash
    of the token, never the token itself)."""
    return token.digest[:PUBLIC_ID_LENGTH]


@transaction.atomic
def token_create(*, actor, request=None) -> tuple[AuthToken, str]:
    """Issue a token to ``actor``; return it and its secret (shown once).

    From a single sign-on session the token is bound to that identity, so
    it stops working once the roles that let the user in are gone.
    """
    from accounts.oidc import services as oidc_services

    identity = oidc_services.session_identity(request) if request else None
    instance, secret = AuthToken.objects.create(user=actor, expiry=_ttl())
    ApiTokenUse.objects.create(
        token=instance,
        auth_hash=actor.get_session_auth_hash(),
        via_sso=identity is not None,
        identity=identity,
    )
    audit_record(
        event_type="api.token.create",
        actor=actor,
        request=request,
        target_type="knox.authtoken",
        target_id=public_id(instance),
        details={"expiry": instance.expiry.isoformat(), "sso": identity is not None},
    )
    if request is not None:
        from accounts import services

        services.security_notice_queue(
            request=request,
            user=actor,
            notice=services.NOTICE_API_TOKEN,
            details={
                "token": public_id(instance),
                "expiry": f"{instance.expiry:%Y-%m-%d %H:%M} UTC",
            },
        )
    return instance, secret


def _revoked(*, tokens: list[str], user, actor, request, reason: str) -> None:
    audit_record(
        event_type="api.token.revoke",
        actor=actor,
        actor_label="" if actor is not None else "system",
        request=request,
        target_type="accounts.user",
        target_id=str(user.pk),
        details={"reason": reason, "tokens": tokens},
    )


def token_revoke(*, actor, token_id: str, request=None) -> None:
    """Revoke one of ``actor``'s own tokens, named by ``public_id``.

    Raises Http404 for an id that is not one of the actor's tokens: another
    user's token is as unknown as one that never existed.
    """
    if len(token_id) != PUBLIC_ID_LENGTH or not all(
        c in "0123456789abcdef" for c in token_id
    ):
        raise Http404
    with transaction.atomic():
        found = list(
            AuthToken.objects.select_for_update().filter(
                user=actor, digest__startswith=token_id
            )
        )
        if len(found) != 1:
            raise Http404
        found[0].delete()
        _revoked(
            tokens=[token_id], user=actor, actor=actor, request=request, reason="owner"
        )


def token_revoke_current(*, actor, token: AuthToken, request=None) -> None:
    """Revoke the token a request authenticated with (``POST
    /api/auth/token/revoke/``)."""
    ident = public_id(token)
    with transaction.atomic():
        token.delete()
        _revoked(
            tokens=[ident], user=actor, actor=actor, request=request, reason="owner"
        )


def tokens_revoke_all(*, user, reason: str, actor=None, request=None) -> int:
    """Revoke every token of ``user`` (``reason`` a key of ``WHY``); return
    how many. Audited when there was one to revoke."""
    with transaction.atomic():
        tokens = AuthToken.objects.filter(user=user)
        ids = [d[:PUBLIC_ID_LENGTH] for d in tokens.values_list("digest", flat=True)]
        if not ids:
            return 0
        tokens.delete()
        _revoked(
            tokens=ids,
            user=user,
            actor=actor if actor is not None else user,
            request=request,
            reason=reason,
        )
    return len(ids)


def tokens_revoke_sso(*, identity, reason: str, request=None) -> int:
    """Revoke the tokens issued under the SSO ``identity``; return how many."""
    with transaction.atomic():
        tokens = AuthToken.objects.filter(
            user=identity.user_id, kreo_use__identity=identity
        )
        ids = [d[:PUBLIC_ID_LENGTH] for d in tokens.values_list("digest", flat=True)]
        if not ids:
            return 0
        tokens.delete()
        _revoked(
            tokens=ids,
            user=identity.user,
            actor=identity.user,
            request=request,
            reason=reason,
        )
    return len(ids)


def _revoke_at_use(token: AuthToken, reason: str, request) -> None:
    """Revoke a token refused at use, and say why (401)."""
    user = token.user
    with transaction.atomic():
        deleted = AuthToken.objects.filter(digest=token.digest).delete()[0]
        if deleted:
            audit_record(
                event_type="api.token.revoke",
                actor=user,
                request=request,
                outcome=Outcome.DENIED,
                target_type="accounts.user",
                target_id=str(user.pk),
                error_code=reason,
                error_description=WHY[reason],
                details={"reason": reason, "tokens": [public_id(token)]},
            )
    raise exceptions.AuthenticationFailed(REVOKED_AT_USE.format(why=WHY[reason]))


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token authentication, plus the checks of this module.

    The token's use row comes in knox's own query (``select_related``), so a
    request costs no extra query; the last use is written at most once a
    ``USE_RESOLUTION``.
    """

    def authenticate(self, request):
        self._request = request
        return super().authenticate(request)

    def authenticate_credentials(self, token):
        # knox's loop, with the use row (and its identity) in the same query.
        token = token.decode("utf-8")
        for auth_token in AuthToken.objects.filter(
            token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH]
        ).select_related("user", "kreo_use", "kreo_use__identity"):
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(token)
            except (TypeError, binascii.Error) as exc:
                raise exceptions.AuthenticationFailed(TOKEN_INVALID) from exc
            if compare_digest(digest, auth_token.digest):
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(TOKEN_INVALID)

    def validate_user(self, auth_token):
        user, auth_token = super().validate_user(auth_token)
        request = getattr(self, "_request", None)
        if user.is_locked():
            raise exceptions.AuthenticationFailed(ACCOUNT_LOCKED)
        try:
            use = auth_token.kreo_use
        except ObjectDoesNotExist:
            # Issued outside token_create (knox's admin): bound from now on.
            use = ApiTokenUse.objects.create(
                token=auth_token, auth_hash=user.get_session_auth_hash()
            )
        if not compare_digest(use.auth_hash, user.get_session_auth_hash()):
            _revoke_at_use(auth_token, "password_changed", request)
        if use.via_sso:
            from accounts.oidc import services as oidc_services

            try:
                problem = oidc_services.identity_access_problem(use.identity)
            except oidc_services.SSOUnconfirmed as exc:
                # Not a verdict: refused now, the token stays.
                raise exceptions.AuthenticationFailed(SSO_UNCONFIRMED) from exc
            if problem:
                _revoke_at_use(auth_token, problem, request)
        now = timezone.now()
        if use.last_used_at is None or now - use.last_used_at >= USE_RESOLUTION:
            ApiTokenUse.objects.filter(pk=use.pk).update(last_used_at=now)
            use.last_used_at = now
        return user, auth_token
