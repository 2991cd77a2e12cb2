"""Account reads for the security page and the login form."""

from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticToken

from accounts.models import SessionRecord, User
from audit.models import AuditEvent

SIGNIN_EVENTS = ("auth.login.success", "auth.login.failure", "auth.2fa.failed")


def session_list(*, user: User) -> list[SessionRecord]:
    return list(SessionRecord.objects.filter(user=user).order_by("-last_seen_at"))


def signin_history(*, user: User, limit: int = 20) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(actor=user, event_type__in=SIGNIN_EVENTS).order_by(
            "-occurred_at", "-id"
        )[:limit]
    )


def otp_status(*, user: User) -> dict:
    devices = list(devices_for_user(user, confirmed=True))
    return {
        "enabled": any(d.__class__.__name__ == "TOTPDevice" for d in devices),
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
