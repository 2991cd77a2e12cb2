"""Account reads for the security page and the login form."""

from django.db.models import Q
from django.utils import timezone
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticToken

from accounts.models import Passkey, SessionRecord, User
from audit.models import AuditEvent

SIGNIN_EVENTS = (
    "auth.login.success",
    "auth.login.failure",
    "auth.2fa.failed",
    "auth.passkey.rejected",
)


def session_list(*, user: User) -> list[SessionRecord]:
    return list(SessionRecord.objects.filter(user=user).order_by("-last_seen_at"))


def api_token_list(*, user: User) -> list[dict]:
    """The user's API tokens still in force, newest first: creation, last use,
    expiry, whether issued under single sign-on, and the id that revokes it."""
    from knox.models import AuthToken

    from accounts.api_tokens import public_id

    tokens = (
        AuthToken.objects.filter(user=user)
        .filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()))
        .select_related("kreo_use")
        .order_by("-created")
    )
    found = []
    for token in tokens:
        use = getattr(token, "kreo_use", None)
        found.append(
            {
                "id": public_id(token),
                "created": token.created,
                "last_used_at": use.last_used_at if use else None,
                "expiry": token.expiry,
                "sso": bool(use and use.via_sso),
            }
        )
    return found


# What the security page calls each event and failure reason.
EVENT_LABELS = {
    "auth.login.success": "Signed in",
    "auth.login.failure": "Sign-in refused",
    "auth.2fa.failed": "Wrong two-factor code",
    "auth.passkey.rejected": "Passkey refused",
}
REASON_LABELS = {
    "bad_password": "wrong password",  # nosec B105
    "locked": "account locked",
    "inactive": "email not confirmed",
    "bad_token": "wrong code",  # nosec B105
    "enrol_bad_token": "wrong code while setting up",  # nosec B105
    "disable_bad_password": "wrong password when turning it off",  # nosec B105
    "passkey_remove_bad_password": "wrong password when removing a passkey",  # nosec B105
    "challenge": "expired or used request",
    "unknown_credential": "passkey not registered",
    "wrong_user": "another account's passkey",
    "sign_count": "counter did not go up",
    "invalid": "answer not verified",
}


def signin_history(*, user: User, limit: int = 20) -> list[AuditEvent]:
    """Recent sign-ins and failures, each with a ``label`` and ``reason``."""
    events = list(
        AuditEvent.objects.filter(actor=user, event_type__in=SIGNIN_EVENTS).order_by(
            "-occurred_at", "-id"
        )[:limit]
    )
    for event in events:
        event.label = EVENT_LABELS.get(event.event_type, event.event_type)
        event.reason = REASON_LABELS.get(event.error_code, event.error_code)
    return events


def passkey_list(*, user: User) -> list[Passkey]:
    """The user's passkeys, oldest first, with created and last used times."""
    return list(Passkey.objects.filter(user=user, confirmed=True).order_by("id"))


def second_factors(*, user: User) -> dict:
    """What the second sign-in step offers: a code box (``has_code``: an
    authenticator app or recovery codes), a passkey button (``has_passkey``)."""
    devices = list(devices_for_user(user, confirmed=True))
    return {
        "has_code": any(not isinstance(d, Passkey) for d in devices),
        "has_passkey": any(isinstance(d, Passkey) for d in devices),
    }


def otp_status(*, user: User) -> dict:
    """``enabled``: the authenticator app is on; ``passkeys``: how many
    passkeys (each a second factor too); ``any``: two-factor is on."""
    devices = list(devices_for_user(user, confirmed=True))
    enabled = any(d.__class__.__name__ == "TOTPDevice" for d in devices)
    passkeys = sum(1 for d in devices if isinstance(d, Passkey))
    return {
        "enabled": enabled,
        "passkeys": passkeys,
        "any": enabled or bool(passkeys),
        "recovery_left": StaticToken.objects.filter(
            device__user=user, device__confirmed=True
        ).count(),
    }


def browser_label(user_agent: str) -> str:
    """A short browser/OS description from a User-Agent string."""
    ua = user_agent or ""
    browser = next(
        (
            name
            for token, name in (
                ("Edg/", "Edge"),
                ("Firefox/", "Firefox"),
                ("Chrome/", "Chrome"),
                ("Safari/", "Safari"),
            )
            if token in ua
        ),
        "Unknown browser",
    )
    system = next(
        (
            name
            for token, name in (
                ("Windows", "Windows"),
                ("Android", "Android"),
                ("iPhone", "iOS"),
                ("Mac OS X", "macOS"),
                ("Linux", "Linux"),
            )
            if token in ua
        ),
        "",
    )
    return f"{browser} on {system}" if system else browser


def signin_device_known(*, user: User, device_id: str) -> tuple[bool, bool]:
    """Whether ``user`` signed in before at all, and from this device.

    A device is a browser's ``kreo_device`` cookie (a random id kept 400
    days; events store its keyed hash): a sign-in from a browser that sent
    none, or one whose id never signed this account in while its events are
    in the hot audit store (``AUDIT_RETENTION_DAYS``), is from a new device.
    """
    earlier = AuditEvent.objects.filter(
        event_type="auth.login.success", actor_id=user.pk
    )
    if not earlier.exists():
        return False, False
    return True, bool(device_id) and earlier.filter(device_id=device_id).exists()


# Reads for the compliance checks ---------------------------------------------------


def _second_factor_user_ids() -> set[int]:
    """Ids of the users with a confirmed authenticator app or passkey (what
    ``otp_status`` calls ``any``; recovery codes alone are not a factor)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    ids = set(
        TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True)
    )
    ids.update(Passkey.objects.filter(confirmed=True).values_list("user_id", flat=True))
    return ids


def _privileged_q() -> Q:
    from kreo.permissions import ADMIN_GROUP, AUDITOR_GROUP

    return (
        Q(is_staff=True)
        | Q(is_superuser=True)
        | Q(groups__name__in=[ADMIN_GROUP, AUDITOR_GROUP])
    )


def privileged_users() -> list[dict]:
    """Active staff, superusers and Admin/Auditor group members: id, email,
    flags, groups and last sign-in."""
    users = (
        User.objects.filter(_privileged_q(), is_active=True)
        .distinct()
        .prefetch_related("groups")
        .order_by("id")
    )
    return [
        {
            "id": u.pk,
            "email": u.email,
            "is_staff": u.is_staff,
            "is_superuser": u.is_superuser,
            "groups": sorted(g.name for g in u.groups.all()),
            "last_login": u.last_login,
            "date_joined": u.date_joined,
        }
        for u in users
    ]


def second_factor_adoption() -> dict:
    """Two-factor adoption of the active accounts: the privileged ones by name
    (``staff``, ``staff_without``: ids and emails), the others as figures."""
    with_factor = _second_factor_user_ids()
    staff = privileged_users()
    staff_ids = {u["id"] for u in staff}
    customers = list(
        User.objects.filter(is_active=True)
        .exclude(pk__in=staff_ids)
        .values_list("pk", flat=True)
    )
    return {
        "staff": [{"id": u["id"], "email": u["email"]} for u in staff],
        "staff_without": [
            {"id": u["id"], "email": u["email"]}
            for u in staff
            if u["id"] not in with_factor
        ],
        "customers": len(customers),
        "customers_with": sum(1 for pk in customers if pk in with_factor),
    }


def users_dormant(*, before) -> list[dict]:
    """Active accounts with no sign-in since ``before`` (never signed in: joined
    before it): id, email, whether privileged, last sign-in."""
    staff_ids = set(
        User.objects.filter(_privileged_q()).values_list("pk", flat=True).distinct()
    )
    users = (
        User.objects.filter(is_active=True)
        .filter(
            Q(last_login__lt=before)
            | Q(last_login__isnull=True, date_joined__lt=before)
        )
        .order_by("id")
        .values("pk", "email", "last_login", "date_joined")
    )
    return [
        {
            "id": u["pk"],
            "email": u["email"],
            "privileged": u["pk"] in staff_ids,
            "last_login": u["last_login"],
            "date_joined": u["date_joined"],
        }
        for u in users
    ]


def api_tokens_in_force(*, at) -> list[dict]:
    """Every API token still in force at ``at``: its public id, owner, creation,
    expiry (None: never) and last use."""
    from knox.models import AuthToken

    from accounts.api_tokens import public_id

    tokens = (
        AuthToken.objects.filter(Q(expiry__isnull=True) | Q(expiry__gt=at))
        .select_related("user", "kreo_use")
        .order_by("created")
    )
    found = []
    for token in tokens:
        use = getattr(token, "kreo_use", None)
        found.append(
            {
                "id": public_id(token),
                "user_id": token.user_id,
                "user": token.user.email,
                "created": token.created,
                "expiry": token.expiry,
                "last_used_at": use.last_used_at if use else None,
            }
        )
    return found
