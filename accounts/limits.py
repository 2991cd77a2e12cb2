"""Rate limits (django-ratelimit on the shared cache) and failure counters.

They fail closed: when the cache does not answer, every function here raises
``kreo.cache.CacheUnavailable`` (the cache backend's own translation, nothing
caught here), and ``accounts.middleware.DependencyOutageMiddleware`` answers
503. Nothing counts as "no failures yet" for want of a cache.
"""

import hashlib

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ratelimit.core import get_usage

from audit.models import Outcome
from audit.services import audit_record
from kreo.net import client_ip
from kreo.views import error_response

TOO_MANY = "Too many attempts. Please wait a while before trying again."


def _cache():
    return caches[settings.RATELIMIT_USE_CACHE]


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def account_key(email: str) -> str:
    """A cache key part for an account: the hashed, normalised address."""
    return hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]


def limit_wait(request: HttpRequest, *, scope: str, email: str | None = None) -> int:
    """Count one attempt at ``scope``; return seconds to wait (0 if allowed).

    Counted per client IP and, when ``email`` is given, per account. The IP is
    ``kreo.net.client_ip``: a forged ``X-Forwarded-For`` changes nothing.
    """
    keys = [("ip", client_ip(request))]
    if email is not None:
        keys.append(("account", account_key(email)))
    wait = 0
    for kind, value in keys:
        usage = get_usage(
            request,
            group=f"accounts.{scope}-{kind}",
            key=lambda group, req, value=value: value,
            rate=settings.ACCOUNTS_RATES[f"{scope}-{kind}"],
            increment=True,
        )
        if usage and usage["should_limit"]:
            wait = max(wait, usage["time_left"], 1)
    return wait


def limited_response(
    request: HttpRequest, *, scope: str, wait: int, json: bool = False
) -> HttpResponse:
    """429 with Retry-After: a page for browsers, JSON for API clients
    (``json``, or a request that accepts JSON)."""
    audit_record(
        event_type="auth.ratelimit.hit",
        request=request,
        outcome=Outcome.DENIED,
        error_code="rate_limited",
        error_description=TOO_MANY,
        details={"scope": scope, "retry_after": wait},
    )
    if json or "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse({"detail": TOO_MANY, "retry_after": wait}, status=429)
    else:
        response = error_response(request, 429, TOO_MANY)
    response["Retry-After"] = str(wait)
    return response


def failures_note(*, email: str, ip: str) -> int:
    """Count a failed sign-in; return the account's recent failure count."""
    cache, ttl = _cache(), settings.ACCOUNTS_FAILURE_WINDOW
    counts = []
    for key in (f"acct-fail:{account_key(email)}", f"ip-fail:{ip}"):
        cache.add(key, 0, ttl)
        counts.append(cache.incr(key))
    return counts[0]


def failures_get(*, email: str, ip: str) -> tuple[int, int]:
    cache = _cache()
    return (
        cache.get(f"acct-fail:{account_key(email)}", 0),
        cache.get(f"ip-fail:{ip}", 0),
    )


def failures_clear(*, email: str) -> None:
    _cache().delete(f"acct-fail:{account_key(email)}")


def captcha_needed(*, email: str, ip: str) -> bool:
    """Adaptive CAPTCHA: only after recent failures for the account or IP."""
    account, from_ip = failures_get(email=email, ip=ip)
    return (
        account >= settings.ACCOUNTS_CAPTCHA_AFTER_ACCOUNT
        or from_ip >= settings.ACCOUNTS_CAPTCHA_AFTER_IP
    )
