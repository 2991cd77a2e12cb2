"""Passkeys (WebAuthn): registration, sign-in without a password, and the
second sign-in step.

Each ceremony starts with options that carry a random challenge, kept in the
session with its purpose, the account it was made for and its time. The
answer is checked against that challenge once: the challenge leaves the
session before anything else is looked at, so an answer sent twice, an
answer to another purpose's challenge or one after ``CHALLENGE_SECONDS`` is
refused; the shared cache notes it as spent as well, for two requests of one
session at once. The signature counter must grow whenever the authenticator
keeps one. Every refusal is audited as ``auth.passkey.rejected``.
"""

import json
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.http import HttpRequest
from django_otp import login as otp_login
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    InvalidRegistrationResponse,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from accounts.models import Passkey, User
from audit.models import Outcome
from audit.services import audit_record

# Session key of the pending challenge.
CHALLENGE = "accounts.passkey.challenge"
# How long an answer may take; the browser is told the same.
CHALLENGE_SECONDS = 120
# Cache key prefix of challenges answered already.
SPENT_PREFIX = "passkey-spent:"
NAME_MAX = 64

# What a ceremony is for.
REGISTER, LOGIN, SECOND_FACTOR = "register", "login", "2fa"

REFUSED_CHALLENGE = (
    "This passkey request has expired or has been used already. Please try again."
)
REFUSED_UNKNOWN = "This passkey is not registered for this account."
REFUSED_INVALID = "The passkey's answer could not be verified."
REFUSED_COUNTER = (
    "The passkey's answer was refused: its counter did not go up, as happens "
    "when an answer is replayed or the key has been copied."
)
REFUSED_LOCKED = "This account cannot sign in at the moment."
REFUSED_REGISTERED = "This passkey is registered already."
REFUSED_NEEDS_2FA = "Sign in with your second factor before adding a passkey."


class PasskeyRefused(Exception):
    """An answer refused; ``str()`` is the message for the person."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


@dataclass
class Relying:
    rp_id: str
    origins: list[str]


def relying_party(request: HttpRequest) -> Relying:
    """The RP ID and origins from the settings, else from the request's host."""
    host = request.get_host()  # checked against ALLOWED_HOSTS
    rp_id = settings.WEBAUTHN_RP_ID or host.rsplit(":", 1)[0].strip("[]")
    origins = settings.WEBAUTHN_ORIGINS or [f"{request.scheme}://{host}"]
    return Relying(rp_id=rp_id, origins=list(origins))


def _challenge_store(
    request: HttpRequest, challenge: bytes, purpose: str, user, handle: str = ""
):
    request.session[CHALLENGE] = {
        "challenge": bytes_to_base64url(challenge),
        "purpose": purpose,
        "user": user.pk if user is not None else None,
        "handle": handle,
        "at": time.time(),
    }


def _challenge_take(request: HttpRequest, purpose: str, user) -> dict | None:
    """The stored challenge (``challenge`` as bytes, and the user ``handle``
    of a registration), once, if it is for ``purpose`` and ``user`` and still
    fresh; it leaves the session whatever the answer."""
    stored = request.session.pop(CHALLENGE, None)
    if not isinstance(stored, dict):
        return None
    if stored.get("purpose") != purpose:
        return None
    if stored.get("user") != (user.pk if user is not None else None):
        return None
    if time.time() - stored.get("at", 0) > CHALLENGE_SECONDS:
        return None
    # Spent for good on the shared cache too: two requests of one session at
    # once both read the challenge before either saves the session without it.
    spent = caches[settings.RATELIMIT_USE_CACHE].add(
        SPENT_PREFIX + stored["challenge"], 1, CHALLENGE_SECONDS * 2
    )
    if not spent:
        return None
    return {**stored, "challenge": base64url_to_bytes(stored["challenge"])}


def _refuse(request, *, code: str, message: str, purpose: str, user=None, **details):
    audit_record(
        event_type="auth.passkey.rejected",
        request=request,
        actor=user,
        outcome=Outcome.FAILURE,
        error_code=code,
        error_description=message,
        details={"purpose": purpose, **details},
    )
    raise PasskeyRefused(message, code)


def _descriptors(passkeys) -> list[PublicKeyCredentialDescriptor]:
    found = []
    for passkey in passkeys:
        transports = []
        for name in passkey.transports or []:
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue
        found.append(
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(passkey.credential_id),
                transports=transports or None,
            )
        )
    return found


def user_passkeys(user: User):
    return Passkey.objects.filter(user=user, confirmed=True)


def _user_handle(user: User) -> str:
    """The account's WebAuthn user handle: that of its passkeys, else new."""
    existing = (
        Passkey.objects.filter(user=user).values_list("user_handle", flat=True).first()
    )
    return existing or bytes_to_base64url(secrets.token_bytes(32))


# Registration --------------------------------------------------------------


def registration_options(*, request: HttpRequest, user: User) -> str:
    """Options for ``navigator.credentials.create()``, as JSON.

    A discoverable credential (resident key) is required, so the passkey can
    sign in without a typed address.
    """
    if _needs_second_factor_first(request, user):
        raise PasskeyRefused(REFUSED_NEEDS_2FA, "unverified_session")
    rp = relying_party(request)
    handle = _user_handle(user)
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=settings.WEBAUTHN_RP_NAME,
        user_id=base64url_to_bytes(handle),
        user_name=user.email,
        user_display_name=user.label,
        timeout=CHALLENGE_SECONDS * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=_descriptors(user_passkeys(user)),
    )
    _challenge_store(request, options.challenge, REGISTER, user, handle)
    return options_to_json(options)


def _needs_second_factor_first(request: HttpRequest, user: User) -> bool:
    """A session that has not passed the account's second factor may not add
    one (only a session signed in some other way, such as in tests)."""
    from django_otp import devices_for_user

    verified = getattr(request.user, "is_verified", lambda: False)()
    return not verified and any(devices_for_user(user, confirmed=True))


def passkey_register(
    *, request: HttpRequest, user: User, credential: str, name: str
) -> Passkey:
    """Check the answer to the registration options and keep the passkey.

    A session that had no second factor (a user enrolling now) counts as
    verified through the new passkey, as after confirming a TOTP app.
    """
    stored = _challenge_take(request, REGISTER, user)
    if stored is None:
        _refuse(
            request,
            code="challenge",
            message=REFUSED_CHALLENGE,
            purpose=REGISTER,
            user=user,
        )
    if _needs_second_factor_first(request, user):
        _refuse(
            request,
            code="unverified_session",
            message=REFUSED_NEEDS_2FA,
            purpose=REGISTER,
            user=user,
        )
    rp = relying_party(request)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=stored["challenge"],
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origins,
        )
    except (InvalidRegistrationResponse, InvalidJSONStructure, ValueError) as exc:
        _refuse(
            request,
            code="invalid",
            message=REFUSED_INVALID,
            purpose=REGISTER,
            user=user,
            reason=str(exc)[:200],
        )
    credential_id = bytes_to_base64url(verified.credential_id)
    if Passkey.objects.filter(credential_id=credential_id).exists():
        _refuse(
            request,
            code="registered",
            message=REFUSED_REGISTERED,
            purpose=REGISTER,
            user=user,
        )
    try:
        transports = json.loads(credential).get("response", {}).get("transports", [])
    except (ValueError, AttributeError):
        transports = []
    passkey = Passkey.objects.create(
        user=user,
        name=(name or "").strip()[:NAME_MAX] or "Passkey",
        confirmed=True,
        credential_id=credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        user_handle=stored["handle"],
        transports=[t for t in transports if isinstance(t, str)][:8],
    )
    if not getattr(request.user, "is_verified", lambda: True)():
        otp_login(request, passkey)
    audit_record(
        event_type="auth.passkey.added",
        request=request,
        actor=user,
        target_type="accounts.passkey",
        target_id=str(passkey.pk),
        details={"name": passkey.name, "aaguid": verified.aaguid},
    )
    return passkey


@transaction.atomic
def passkey_remove(*, request: HttpRequest, user: User, passkey_id: int) -> bool:
    """Delete one of the user's own passkeys (the view checked the password)."""
    passkey = Passkey.objects.filter(pk=passkey_id, user=user).first()
    if passkey is None:
        return False
    passkey.delete()
    audit_record(
        event_type="auth.passkey.removed",
        request=request,
        actor=user,
        target_type="accounts.passkey",
        target_id=str(passkey_id),
        details={"name": passkey.name},
    )
    return True


# Authentication ------------------------------------------------------------


def authentication_options(*, request: HttpRequest, user: User | None) -> str:
    """Options for ``navigator.credentials.get()``, as JSON.

    Without ``user`` (sign-in without a password) the browser offers any
    passkey it holds for this site, and the person must be verified by the
    authenticator; with ``user`` (the second step) only that user's passkeys.
    """
    rp = relying_party(request)
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        timeout=CHALLENGE_SECONDS * 1000,
        allow_credentials=_descriptors(user_passkeys(user)) if user else [],
        user_verification=(
            UserVerificationRequirement.PREFERRED
            if user
            else UserVerificationRequirement.REQUIRED
        ),
    )
    _challenge_store(request, options.challenge, SECOND_FACTOR if user else LOGIN, user)
    return options_to_json(options)


def passkey_authenticate(
    *, request: HttpRequest, credential: str, user: User | None
) -> Passkey:
    """The passkey whose signed answer to the stored challenge checks out.

    ``user`` is the account that owes a second factor; without it, the
    account is the passkey's own (sign-in without a password). Raises
    ``PasskeyRefused`` (audited) for anything else. The caller signs in.
    """
    purpose = SECOND_FACTOR if user else LOGIN
    stored = _challenge_take(request, purpose, user)
    if stored is None:
        _refuse(
            request,
            code="challenge",
            message=REFUSED_CHALLENGE,
            purpose=purpose,
            user=user,
        )
    try:
        answer = json.loads(credential)
        credential_id = str(answer["id"])
        user_handle = (answer.get("response") or {}).get("userHandle") or ""
    except (ValueError, TypeError, KeyError, AttributeError):
        _refuse(request, code="invalid", message=REFUSED_INVALID, purpose=purpose)
    refusal, passkey, _ = _assertion_check(
        request, credential, credential_id, user_handle, stored["challenge"], user
    )
    if refusal is not None:
        code, message, actor, details = refusal
        _refuse(
            request, code=code, message=message, purpose=purpose, user=actor, **details
        )
    owner = passkey.user
    audit_record(
        event_type="auth.passkey.used",
        request=request,
        actor=owner,
        target_type="accounts.passkey",
        target_id=str(passkey.pk),
        details={"purpose": purpose},
    )
    return passkey


@transaction.atomic
def _assertion_check(request, credential, credential_id, user_handle, expected, user):
    """(refusal, passkey, verified): the checks of one answer, with the
    passkey's row locked while its counter is read and raised.

    A refusal is (code, message, actor, details), recorded by the caller
    outside this transaction, which it does not roll back.
    """
    passkey = (
        Passkey.objects.select_for_update()
        .select_related("user")
        .filter(credential_id=credential_id, confirmed=True)
        .first()
    )
    if passkey is None:
        return ("unknown_credential", REFUSED_UNKNOWN, user, {}), None, None
    owner = passkey.user
    if user is not None and passkey.user_id != user.pk:
        details = {"passkey_user": passkey.user_id}
        return ("wrong_user", REFUSED_UNKNOWN, user, details), None, None
    if user_handle and user_handle != passkey.user_handle:
        return ("wrong_user", REFUSED_UNKNOWN, owner, {}), None, None
    if not owner.is_active or owner.is_locked():
        code = "locked" if owner.is_active else "inactive"
        return (code, REFUSED_LOCKED, owner, {}), None, None
    rp = relying_party(request)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=expected,
            expected_rp_id=rp.rp_id,
            expected_origin=rp.origins,
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=user is None,
        )
    except (InvalidAuthenticationResponse, InvalidJSONStructure, ValueError) as exc:
        counter = "sign count" in str(exc).lower()
        details = {"passkey": passkey.pk, "reason": str(exc)[:200]}
        if counter:
            return ("sign_count", REFUSED_COUNTER, owner, details), None, None
        return ("invalid", REFUSED_INVALID, owner, details), None, None
    passkey.sign_count = verified.new_sign_count
    passkey.set_last_used_timestamp(commit=False)
    passkey.save(update_fields=["sign_count", "last_used_at"])
    return None, passkey, verified
