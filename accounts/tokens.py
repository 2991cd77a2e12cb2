"""Email-verification links: signed, expiring, single use."""

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

SALT = "accounts.verify-email"


class TokenInvalid(Exception):
    pass


class TokenExpired(TokenInvalid):
    pass


def _state(user) -> str:
    # Changes once the address is verified (or the email changes), so a link
    # works once only.
    value = f"{user.pk}:{user.email}:{user.email_verified_at}:{user.is_active}"
    return salted_hmac(SALT, value).hexdigest()[:32]


def verify_token_make(user) -> str:
    return signing.dumps({"u": user.pk, "s": _state(user)}, salt=SALT, compress=True)


def verify_token_check(token: str, *, user_model):
    """Return the user the token names, or raise ``TokenInvalid``."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.ACCOUNTS_VERIFY_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise TokenExpired from exc
    except signing.BadSignature as exc:
        raise TokenInvalid from exc
    user = user_model.objects.filter(pk=data.get("u")).first()
    if user is None or not constant_time_compare(_state(user), data.get("s", "")):
        raise TokenInvalid
    return user
