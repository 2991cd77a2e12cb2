"""Account writes: sign-up, verification, sign-in, lockout, sessions, passwords.

Every account event is recorded through ``audit.services.audit_record``.
"""

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from importlib import import_module

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.cache import caches
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from kombu.exceptions import OperationalError as BrokerUnavailable

from accounts import api_tokens, emails, limits, selectors, tokens
from accounts.models import Passkey, SessionRecord, User
from audit.models import Outcome
from audit.services import audit_record, device_cookie_ensure, device_id
from kreo.net import client_ip

logger = logging.getLogger(__name__)

LOGIN_INVALID = "The email address or password is not correct."
VERIFY_INVALID = "This link is not valid, or it has already been used."
VERIFY_EXPIRED = "This link has expired. Ask for a new one below."
RECOVERY_NEEDS_2FA = "Recovery codes come with two-factor authentication: turn it on."
RECOVERY_CODE_COUNT = 10
SIGNUP_BROWSER_PREFIX = "accounts:signup-browser:"
SIGNUP_BROWSER_SALT = "accounts.signup-browser"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

# Session keys of this app.
AUTH_AT, SEEN_AT, PENDING = "accounts.auth_at", "accounts.seen_at", "accounts.pending"
# How long the second sign-in step may take after the password was accepted.
PENDING_SECONDS = 300
# Last-seen times are written at most this often.
TOUCH_SECONDS = 60


@dataclass
class LoginResult:
    user: User | None = None
    needs_otp: bool = False
    error: str = ""
    details: dict = field(default_factory=dict)


def _abs(request: HttpRequest, name: str, **kwargs) -> str:
    return request.build_absolute_uri(reverse(name, kwargs=kwargs or None))


# Sign-up and verification -------------------------------------------------


@transaction.atomic
def user_signup(*, request: HttpRequest, email: str, password: str) -> User | None:
    """Create an inactive account and queue its verification link.

    An address that already has an account gets a notice instead; the caller
    answers the same either way, so sign-up tells nobody which addresses exist.
    Both mails leave from a Celery task after commit, so the two paths do the
    same request-path work and neither waits on the mail server.
    """
    from accounts import tasks

    email = limits.normalise_email(email)
    existing = User.objects.filter(email__iexact=email).first()
    if existing is not None:
        make_password(password)  # same work as a real sign-up
        _mail_queue(request, tasks.signup_existing_send, existing)
        # The same cache write as below, under a key no link ever reads.
        _signup_browser_remember(request, "exists")
        audit_record(
            event_type="auth.signup",
            request=request,
            actor=existing,
            outcome=Outcome.FAILURE,
            error_code="exists",
            error_description="Sign-up for an address that has an account.",
        )
        return None
    user = User.objects.create_user(email=email, password=password, is_active=False)
    _signup_browser_remember(request, str(user.pk))
    _mail_queue(request, tasks.verification_send, user)
    audit_record(event_type="auth.signup", request=request, actor=user, target=user)
    return user


def _browser_mark(request: HttpRequest) -> str:
    """A keyed digest of this browser's CSRF secret ("" without one).

    The secret stays the same in a browser until it signs in, and only that
    browser has it; its digest is all that is stored.
    """
    secret = request.COOKIES.get(settings.CSRF_COOKIE_NAME, "")
    return salted_hmac(SIGNUP_BROWSER_SALT, secret).hexdigest() if secret else ""


def _signup_browser_remember(request: HttpRequest, key: str) -> None:
    """Note which browser signed up, so its confirmation can sign it in.

    Kept in the cache, not the session: a session write would add a cookie
    to one sign-up answer and not the other, and tell who has an account.
    """
    try:
        caches[settings.RATELIMIT_USE_CACHE].set(
            SIGNUP_BROWSER_PREFIX + key,
            _browser_mark(request),
            timeout=settings.ACCOUNTS_VERIFY_MAX_AGE,
        )
    except Exception:  # the cache is out: the link still confirms, sign in by hand
        logger.warning("accounts: could not remember the sign-up browser")


def _signup_browser_matches(request: HttpRequest, user: User) -> bool:
    """Whether this request comes from the browser that signed ``user`` up."""
    mark = _browser_mark(request)
    if not mark:
        return False
    cache = caches[settings.RATELIMIT_USE_CACHE]
    try:
        stored = cache.get(SIGNUP_BROWSER_PREFIX + str(user.pk))
        cache.delete(SIGNUP_BROWSER_PREFIX + str(user.pk))
    except Exception:
        return False
    return bool(stored) and constant_time_compare(stored, mark)


def _mail_queue(request: HttpRequest, task, user: User, **extra) -> None:
    """Queue ``task`` for ``user`` once the transaction commits.

    Only the account id and the site's address (and ``extra``: plain facts,
    never a secret) go to the broker; the task loads the account, checks it
    again and makes any link when it sends.
    """
    transaction.on_commit(
        partial(
            _mail_task_send,
            request,
            task,
            user_id=user.pk,
            protocol=request.scheme,
            domain=request.get_host(),
            **extra,
        )
    )


def _mail_task_send(request: HttpRequest, task, *, user_id, **kwargs) -> None:
    """Queue the mail task; with the broker down, log and audit, do not fail.

    The pages after sign-up, reset and resend answer the same whether the
    address has an account (no enumeration), so a failure to queue for a real
    account must not answer differently: the page says what it always says,
    and the mail that did not leave is an error in the log and the audit
    trail. The person can ask again (resend, reset) once the broker is back.
    """
    try:
        task.delay(user_id=user_id, **kwargs)
    except BrokerUnavailable as exc:
        logger.error("mail task %s for user %s not queued: %s", task.name, user_id, exc)
        audit_record(
            event_type="auth.mail.unqueued",
            request=request,
            outcome=Outcome.ERROR,
            target_type="accounts.user",
            target_id=str(user_id),
            error_code="broker_unavailable",
            error_description=str(exc)[:200],
            details={"task": task.name},
        )


def _site_link(protocol: str, domain: str, name: str, **kwargs) -> str:
    return f"{protocol}://{domain}{reverse(name, kwargs=kwargs or None)}"


def _awaiting_verification():
    return User.objects.filter(email_verified_at__isnull=True, is_active=False)


def verification_mail(*, user_id: int, protocol: str, domain: str) -> bool:
    """Mail a fresh verification link, if the account still awaits one.

    The account is checked again because it may have been verified, or
    activated by staff, since the mail was queued; the link is made now.
    """
    user = _awaiting_verification().filter(pk=user_id).first()
    if user is None:
        return False
    token = tokens.verify_token_make(user)
    emails.verification_send(
        user=user, link=_site_link(protocol, domain, "accounts:verify", token=token)
    )
    return True


def signup_existing_mail(*, user_id: int, protocol: str, domain: str) -> bool:
    """Tell the owner of an address that someone tried to sign up with it."""
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        return False
    emails.signup_existing_send(
        user=user,
        login_link=_site_link(protocol, domain, "accounts:login"),
        reset_link=_site_link(protocol, domain, "accounts:password-reset"),
    )
    return True


def verify_link_user(*, token: str) -> User | None:
    """The account a confirmation link names while it still works, else None.

    Reads only: the page a mail scanner may fetch changes nothing.
    """
    try:
        return tokens.verify_token_check(token, user_model=User)
    except tokens.TokenInvalid:
        return None


def user_verify_email(*, request: HttpRequest, token: str) -> User:
    """Activate the account the link names; a link works once.

    Confirmed in the browser that signed up (and that is signed in as nobody),
    the account is signed in too: that browser gave the password minutes ago.
    Anywhere else the person signs in as usual.
    """
    try:
        user = tokens.verify_token_check(token, user_model=User)
    except tokens.TokenInvalid as exc:
        expired = isinstance(exc, tokens.TokenExpired)
        audit_record(
            event_type="auth.verify",
            request=request,
            outcome=Outcome.FAILURE,
            error_code="expired" if expired else "invalid",
            error_description=VERIFY_EXPIRED if expired else VERIFY_INVALID,
        )
        raise ValueError(VERIFY_EXPIRED if expired else VERIFY_INVALID) from exc
    with transaction.atomic():
        # Two clicks at once: the second finds the row already verified.
        updated = User.objects.filter(
            pk=user.pk, email_verified_at__isnull=True
        ).update(is_active=True, email_verified_at=timezone.now())
        if updated:
            audit_record(
                event_type="auth.verify", request=request, actor=user, target=user
            )
    if not updated:
        raise ValueError(VERIFY_INVALID)
    if not request.user.is_authenticated and _signup_browser_matches(request, user):
        user.backend = MODEL_BACKEND
        login_complete(request=request, user=user)
    return user


@transaction.atomic
def verification_resend(*, request: HttpRequest, email: str) -> None:
    """Queue a new link if the address has an unverified account; else nothing.

    As with a password reset, the mail leaves from a Celery task after
    commit: sent inline, it made an unverified address answer an SMTP round
    trip slower than any other, which told an attacker who had signed up.
    """
    from accounts import tasks

    user = (
        _awaiting_verification()
        .filter(email__iexact=limits.normalise_email(email))
        .first()
    )
    if user is not None:
        _mail_queue(request, tasks.verification_send, user)
        audit_record(
            event_type="auth.verify.resent", request=request, actor=user, target=user
        )


# Sign-in ------------------------------------------------------------------


def login_attempt(*, request: HttpRequest, email: str, password: str) -> LoginResult:
    """Check a password, unless the account is locked; count failures.

    A locked account is refused with the same message as a wrong password,
    and its password is not checked at all.
    """
    email = limits.normalise_email(email)
    user = User.objects.filter(email__iexact=email).first()
    if user is not None and user.is_locked():
        _login_failed(request, email, user, "locked")
        return LoginResult(error=LOGIN_INVALID)
    authed = authenticate(request, username=email, password=password)
    if authed is None:
        if user is None:
            reason = "unknown_account"
        elif not user.is_active:
            reason = "inactive"
        else:
            reason = "bad_password"
        _login_failed(request, email, user, reason)
        return LoginResult(error=LOGIN_INVALID)
    limits.failures_clear(email=email)
    _lock_counter_clear(authed)
    if _has_device(authed):
        request.session.cycle_key()
        request.session[PENDING] = {
            "user": authed.pk,
            "backend": authed.backend,
            "at": time.time(),
        }
        audit_record(
            event_type="auth.login.password_ok",
            request=request,
            actor=authed,
            details={"next_step": "otp"},
        )
        return LoginResult(user=authed, needs_otp=True)
    login_complete(request=request, user=authed)
    return LoginResult(user=authed)


def _has_device(user: User) -> bool:
    from django_otp import devices_for_user

    return any(devices_for_user(user, confirmed=True))


def _login_failed(request, email: str, user: User | None, reason: str) -> None:
    ip = client_ip(request)
    limits.failures_note(email=email, ip=ip)
    audit_record(
        event_type="auth.login.failure",
        request=request,
        actor=user,
        outcome=Outcome.FAILURE,
        error_code=reason,
        error_description=LOGIN_INVALID,
        details={"email": email[:254]},
    )
    if user is not None and reason == "bad_password":
        _lock_count(request, user)


def _lock_key(user: User) -> str:
    return f"lock-fail:{user.pk}"


def _lock_counter_clear(user: User) -> None:
    caches[settings.RATELIMIT_USE_CACHE].delete(_lock_key(user))
    if user.locked_until or user.lockout_level:
        User.objects.filter(pk=user.pk).update(locked_until=None, lockout_level=0)


def _lock_count(request, user: User) -> None:
    cache = caches[settings.RATELIMIT_USE_CACHE]
    key = _lock_key(user)
    cache.add(key, 0, settings.ACCOUNTS_FAILURE_WINDOW)
    if cache.incr(key) >= settings.ACCOUNTS_LOCKOUT_THRESHOLD:
        cache.delete(key)
        user_lock(request=request, user=user)


@transaction.atomic
def user_lock(*, request: HttpRequest | None, user: User) -> None:
    """Lock the account and revoke its API tokens; each lockout in a row
    doubles the cool-off."""
    user = User.objects.select_for_update().get(pk=user.pk)
    seconds = min(
        settings.ACCOUNTS_LOCKOUT_SECONDS * (2**user.lockout_level),
        settings.ACCOUNTS_LOCKOUT_MAX_SECONDS,
    )
    user.locked_until = timezone.now() + timedelta(seconds=seconds)
    user.lockout_level += 1
    user.save(update_fields=["locked_until", "lockout_level"])
    reset_link = (
        _abs(request, "accounts:password-reset")
        if request is not None
        else reverse("accounts:password-reset")
    )
    emails.lockout_send(user=user, until=user.locked_until, reset_link=reset_link)
    audit_record(
        event_type="auth.lockout",
        request=request,
        actor=user,
        target=user,
        outcome=Outcome.DENIED,
        error_code="too_many_failures",
        details={"seconds": seconds, "level": user.lockout_level},
    )
    api_tokens.tokens_revoke_all(
        user=user, actor=None, request=request, reason="locked_out"
    )


@transaction.atomic
def user_unlock(*, actor: User, user: User) -> None:
    """Staff lift a lockout before its cool-off ends."""
    User.objects.filter(pk=user.pk).update(locked_until=None, lockout_level=0)
    caches[settings.RATELIMIT_USE_CACHE].delete(_lock_key(user))
    audit_record(event_type="auth.unlock", actor=actor, target=user)


def login_pending_user(request: HttpRequest) -> User | None:
    """The user who passed the password step and owes a second factor."""
    pending = request.session.get(PENDING)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None
    user = User.objects.filter(pk=pending["user"], is_active=True).first()
    if user is not None:
        user.backend = pending["backend"]
    return user


def login_otp_attempt(*, request: HttpRequest, user: User, token: str) -> bool:
    """Finish a pending sign-in with a TOTP or recovery code."""
    device = otp_match(user=user, token=token)
    if device is None:
        audit_record(
            event_type="auth.2fa.failed",
            request=request,
            actor=user,
            outcome=Outcome.FAILURE,
            error_code="bad_token",
        )
        return False
    request.session.pop(PENDING, None)
    login_complete(request=request, user=user, device=device)
    return True


def login_passkey_finish(*, request: HttpRequest, passkey, pending: User | None):
    """Finish a sign-in with a passkey whose answer ``accounts.passkeys`` has
    checked: the second step of ``pending``, or a sign-in without a password
    as the passkey's owner. The session is then OTP-verified by the passkey.
    """
    user = pending
    if user is None:
        user = passkey.user
        user.backend = MODEL_BACKEND
        limits.failures_clear(email=user.email)
        _lock_counter_clear(user)
    request.session.pop(PENDING, None)
    login_complete(request=request, user=user, device=passkey)
    return user


def otp_match(*, user: User, token: str):
    """The confirmed device that accepts ``token`` (each one throttles itself)."""
    from django_otp import devices_for_user

    token = (token or "").strip().replace(" ", "")
    if not token:
        return None
    for device in devices_for_user(user, confirmed=True):
        allowed, _ = device.verify_is_allowed()
        if allowed and device.verify_token(token):
            return device
    return None


def login_complete(*, request: HttpRequest, user: User, device=None) -> None:
    """Sign in (rotating the session key) and track the new session."""
    login(request, user, backend=getattr(user, "backend", None))
    if device is not None:
        otp_login(request, device)
    now = time.time()
    request.session[AUTH_AT] = now
    request.session[SEEN_AT] = now
    if request.session.session_key is None:
        request.session.save()
    SessionRecord.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={
            "user": user,
            "ip": client_ip(request),
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:512],
        },
    )
    device_cookie_ensure(request)
    signed_in_before, known = selectors.signin_device_known(
        user=user, device_id=device_id(request)
    )
    if signed_in_before and not known:
        security_notice_queue(request=request, user=user, notice=NOTICE_NEW_SIGNIN)
    audit_record(
        event_type="auth.login.success",
        request=request,
        actor=user,
        details={
            "otp": device is not None,
            "device": type(device).__name__ if device is not None else "",
        },
    )


def user_logout(*, request: HttpRequest) -> None:
    user = request.user if request.user.is_authenticated else None
    if user is not None:
        SessionRecord.objects.filter(session_key=request.session.session_key).delete()
        audit_record(event_type="auth.logout", request=request, actor=user)
    logout(request)


# Sessions -----------------------------------------------------------------


def session_check(*, request: HttpRequest) -> bool:
    """End the session if idle, too old or revoked; return whether it ended."""
    session, now = request.session, time.time()
    auth_at = session.get(AUTH_AT)
    if auth_at is None:
        # A session begun outside the login view (``force_login`` in tests):
        # start tracking it from now.
        session[AUTH_AT] = session[SEEN_AT] = now
        if session.session_key is None:
            session.save()
        SessionRecord.objects.get_or_create(
            session_key=session.session_key,
            defaults={
                "user": request.user,
                "ip": client_ip(request),
                "user_agent": request.META.get("HTTP_USER_AGENT", "")[:512],
            },
        )
        return False
    seen = session.get(SEEN_AT, auth_at)
    reason = ""
    if now - seen > settings.ACCOUNTS_SESSION_IDLE_SECONDS:
        reason = "idle"
    elif now - auth_at > settings.ACCOUNTS_SESSION_ABSOLUTE_SECONDS:
        reason = "absolute"
    elif not SessionRecord.objects.filter(
        session_key=session.session_key, user=request.user
    ).exists():
        reason = "revoked"
    if reason:
        user = request.user
        SessionRecord.objects.filter(session_key=session.session_key).delete()
        logout(request)
        audit_record(
            event_type="auth.session.ended",
            request=request,
            actor=user,
            error_code=reason,
        )
        return True
    if now - seen > TOUCH_SECONDS:
        session[SEEN_AT] = now
        SessionRecord.objects.filter(session_key=session.session_key).update(
            last_seen_at=timezone.now(), ip=client_ip(request)
        )
    return False


def _session_store():
    return import_module(settings.SESSION_ENGINE).SessionStore


def session_revoke(*, request: HttpRequest, actor: User, record_id: int) -> bool:
    """Sign out one of the actor's own sessions."""
    record = SessionRecord.objects.filter(pk=record_id, user=actor).first()
    if record is None:
        return False
    _session_store()(session_key=record.session_key).delete()
    record.delete()
    audit_record(
        event_type="auth.session.revoked",
        request=request,
        actor=actor,
        details={"ip": record.ip, "scope": "one"},
    )
    return True


def sessions_end_others(
    *, request: HttpRequest | None, user: User, keep: str | None, reason: str
) -> int:
    """Sign out every session of ``user`` except the one keyed ``keep``."""
    records = SessionRecord.objects.filter(user=user)
    if keep:
        records = records.exclude(session_key=keep)
    store, count = _session_store(), 0
    for record in records:
        store(session_key=record.session_key).delete()
        record.delete()
        count += 1
    audit_record(
        event_type="auth.session.revoked",
        request=request,
        actor=user,
        details={"scope": "others", "count": count, "reason": reason},
    )
    return count


# Passwords ----------------------------------------------------------------


def password_changed(*, request: HttpRequest, user: User, old_key: str) -> None:
    """After a change: keep this session (under its new key), end the others,
    revoke every API token."""
    SessionRecord.objects.filter(session_key=old_key, user=user).update(
        session_key=request.session.session_key
    )
    sessions_end_others(
        request=request,
        user=user,
        keep=request.session.session_key,
        reason="password_changed",
    )
    audit_record(event_type="auth.password.changed", request=request, actor=user)
    security_notice_queue(request=request, user=user, notice=NOTICE_PASSWORD_CHANGED)
    api_tokens.tokens_revoke_all(
        user=user, actor=user, request=request, reason="password_changed"
    )


def password_reset_done(*, request: HttpRequest, user: User) -> None:
    """After a reset by email: end every session, revoke every API token and
    lift any lockout."""
    sessions_end_others(request=request, user=user, keep=None, reason="reset")
    _lock_counter_clear(user)
    audit_record(event_type="auth.password.reset", request=request, actor=user)
    security_notice_queue(request=request, user=user, notice=NOTICE_PASSWORD_RESET)
    api_tokens.tokens_revoke_all(
        user=user, actor=user, request=request, reason="password_reset"
    )


@transaction.atomic
def password_reset_request(*, request: HttpRequest, email: str) -> None:
    """Record the request and queue the reset mail if the address has an account.

    The mail leaves from a Celery task after commit, never on the request
    path: sending it inline made a known address answer an SMTP round trip
    slower than an unknown one, which told an attacker who has an account.
    Only the account id and the site's address go to the broker; the token is
    made when the mail is sent.
    """
    from accounts import tasks

    audit_record(
        event_type="auth.password.reset_requested",
        request=request,
        details={"email": limits.normalise_email(email)[:254]},
    )
    # Django's own rule (active, usable password, Unicode-safe address match).
    for user in PasswordResetForm().get_users(email):
        _mail_queue(request, tasks.password_reset_send, user)


def password_reset_mail(*, user_id: int, protocol: str, domain: str) -> bool:
    """Mail a single-use reset link to the account, if it may still reset.

    The account is checked again because it may have been deactivated, or
    its password made unusable, since the request was queued.
    """
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.has_usable_password():
        return False
    emails.password_reset_send(
        user=user,
        protocol=protocol,
        domain=domain,
        uid=urlsafe_base64_encode(force_bytes(user.pk)),
        token=default_token_generator.make_token(user),
    )
    return True


# Two-factor ---------------------------------------------------------------


def otp_enrol_start(*, user: User):
    """The user's unconfirmed TOTP device, created on first call."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(
            user=user, name="Authenticator", confirmed=False
        )
    return device


@transaction.atomic
def otp_enrol_confirm(*, request: HttpRequest, user: User, token: str) -> list[str]:
    """Confirm the TOTP device with a code; return ten new recovery codes."""
    device = otp_enrol_start(user=user)
    if not device.verify_token((token or "").strip().replace(" ", "")):
        audit_record(
            event_type="auth.2fa.failed",
            request=request,
            actor=user,
            outcome=Outcome.FAILURE,
            error_code="enrol_bad_token",
        )
        raise ValueError("The code is not correct. Check the time on your device.")
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _recovery_codes_new(user)
    otp_login(request, device)
    audit_record(event_type="auth.2fa.enrolled", request=request, actor=user)
    return codes


def _recovery_codes_new(user: User) -> list[str]:
    """Replace the user's recovery codes with ten new ones; return them."""
    StaticDevice.objects.filter(user=user).delete()
    recovery = StaticDevice.objects.create(user=user, name="Recovery codes")
    codes = [secrets.token_hex(5) for _ in range(RECOVERY_CODE_COUNT)]
    recovery.token_set.bulk_create(
        [recovery.token_set.model(device=recovery, token=code) for code in codes]
    )
    return codes


@transaction.atomic
def otp_recovery_regenerate(*, request: HttpRequest, user: User) -> list[str]:
    """Void every recovery code of ``user`` and return ten new ones.

    Only for an account with two-factor on, from a session that passed it;
    the caller has checked the password.
    """
    from django_otp.plugins.otp_totp.models import TOTPDevice

    has_app = TOTPDevice.objects.filter(user=user, confirmed=True).exists()
    if not has_app or not getattr(user, "is_verified", lambda: False)():
        raise ValueError(RECOVERY_NEEDS_2FA)
    left = StaticToken.objects.filter(device__user=user).count()
    codes = _recovery_codes_new(user)
    audit_record(
        event_type="auth.2fa.recovery_regenerated",
        request=request,
        actor=user,
        details={"voided": left},
    )
    return codes


@transaction.atomic
def user_time_zone_set(*, request: HttpRequest, user: User, time_zone: str) -> None:
    """Show ``user`` times in ``time_zone`` (an IANA name the form has checked)."""
    before = user.time_zone
    if before == time_zone:
        return
    user.time_zone = time_zone
    user.save(update_fields=["time_zone"])
    audit_record(
        event_type="account.time_zone.changed",
        actor=user,
        request=request,
        target=user,
        details={"from": before, "to": time_zone},
    )


@transaction.atomic
def otp_disable(*, request: HttpRequest, user: User) -> None:
    """Remove every device, passkeys too (the view has checked the password)."""
    from django_otp import devices_for_user

    passkeys = 0
    for device in list(devices_for_user(user, confirmed=None)):
        passkeys += isinstance(device, Passkey)
        device.delete()
    audit_record(
        event_type="auth.2fa.removed",
        request=request,
        actor=user,
        details={"passkeys": passkeys},
    )
    security_notice_queue(request=request, user=user, notice=NOTICE_OTP_DISABLED)


@transaction.atomic
def demo_user_ensure(*, email: str) -> tuple[User, str]:
    """Create the verified demo user of ``make run``, or give it a fresh password.

    Returns the user and the new random password (printed once by demo_seed).
    """
    password = "demo-" + secrets.token_urlsafe(12)
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password)
    else:
        user.set_password(password)
    user.is_active = True
    user.email_verified_at = user.email_verified_at or timezone.now()
    user.save()
    return user, password


# Security notices ---------------------------------------------------------

# What the owner of an account is told of (templates
# accounts/email/security_<notice>*.txt).
NOTICE_NEW_SIGNIN = "new_signin"
NOTICE_PASSWORD_CHANGED = "password_changed"  # noqa: S105  # nosec B105 - a name
NOTICE_PASSWORD_RESET = "password_reset"  # noqa: S105  # nosec B105 - a name
NOTICE_OTP_DISABLED = "otp_disabled"
NOTICE_API_TOKEN = "api_token_created"  # noqa: S105  # nosec B105 - a name
NOTICES = frozenset(
    {
        NOTICE_NEW_SIGNIN,
        NOTICE_PASSWORD_CHANGED,
        NOTICE_PASSWORD_RESET,
        NOTICE_OTP_DISABLED,
        NOTICE_API_TOKEN,
    }
)
BROWSER_CHARS = 160


def security_notice_queue(
    *, request: HttpRequest, user: User, notice: str, details: dict | None = None
) -> None:
    """Mail ``user`` about ``notice`` from a task once the transaction
    commits: when, from which address and browser, and what to do if it was
    not them. ``details`` are plain facts for the mail, never a secret."""
    from accounts import tasks

    if notice not in NOTICES:
        raise ValueError(f"unknown security notice {notice!r}")
    browser = " ".join(request.META.get("HTTP_USER_AGENT", "").split())
    _mail_queue(
        request,
        tasks.security_notice_send,
        user,
        notice=notice,
        ip=client_ip(request),
        browser=browser[:BROWSER_CHARS],
        at=timezone.now().isoformat(),
        details=details or {},
    )


def security_notice_mail(
    *,
    user_id: int,
    notice: str,
    protocol: str,
    domain: str,
    ip: str,
    browser: str,
    at: str,
    details: dict | None = None,
) -> bool:
    """Send one security notice to an active account's owner."""
    if notice not in NOTICES:
        raise ValueError(f"unknown security notice {notice!r}")
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    emails.security_notice_send(
        user=user,
        notice=notice,
        context={
            "at": datetime.fromisoformat(at),
            "ip": ip,
            "browser": browser or "unknown",
            "details": details or {},
            "security_link": _site_link(protocol, domain, "accounts:security"),
            "reset_link": _site_link(protocol, domain, "accounts:password-reset"),
        },
    )
    return True
