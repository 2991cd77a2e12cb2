"""Who needs what: read from settings at call time, never at import."""

from django.conf import settings


def otp_required_for(user) -> bool:
    """Staff always need 2FA; everyone does when the setting says "all"."""
    if settings.ACCOUNTS_2FA_REQUIRED_FOR == "all":
        return True
    return bool(user.is_staff)
