"""Request limits on every endpoint: one table of scopes by URL name.

Every URL name maps to a scope in ``SCOPES`` (optionally one per method), or
is in ``EXEMPT`` with the reason written down; ``kreo/tests/test_limits.py``
walks the URL configuration and fails on a URL in neither. Two adapters
enforce the table: ``kreo.middleware.RequestLimitMiddleware`` for pages and
``kreo.throttles`` for the DRF API (which knows the token's user), both
counting here, on the shared rate-limit cache, so every process shares one
count. Rates are ``settings.KREO_REQUEST_RATES`` ("count/period").

A request is counted per signed-in user, else per client IP
(``kreo.net.client_ip``: a forged ``X-Forwarded-For`` changes nothing).
Counters are fixed windows: one atomic increment per request, the key
expiring with its window.

When the cache does not answer, the limits that guard a secret (password
checks, token creation, sign-in through ``/oidc/``) fail closed:
``kreo.cache.CacheUnavailable`` propagates and the request answers 503, as
the sign-in forms do. The limits that guard capacity (pages, API calls,
uploads, downloads) fail open, logged: a cache outage must not become an
outage of every page (sessions are in the database).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from audit.bounded import audit_record_bounded
from audit.models import Outcome
from kreo.cache import CacheUnavailable
from kreo.counters import window, window_count, window_get
from kreo.net import client_ip
from kreo.views import error_response

logger = logging.getLogger(__name__)

TOO_MANY = "Too many requests. Wait a moment, then try again."
UNAVAILABLE = "This is unavailable for a moment. Please try again shortly."
RATE_LIMITED_EVENT = "http.ratelimit.hit"

PAGE, API, API_ANON = "page", "api", "api-anon"
DOWNLOAD, UPLOAD, TOKEN = "download", "upload", "token"
OIDC, PASSWORD, ACCOUNT_DELETE = "oidc", "password", "account-delete"
# The byte budget of DOWNLOAD, counted after the response (its Content-Length).
DOWNLOAD_BYTES = "download-bytes"
# Scopes refused (503) rather than let through when the cache is out.
FAIL_CLOSED = frozenset({PASSWORD, ACCOUNT_DELETE, TOKEN, OIDC})
# Scopes read before the view and counted once the response went out (as the
# audit middleware writes its event): the hot path pays one cache read, not a
# write. A burst overshoots by at most the requests in flight at that moment;
# every scope that guards a secret or a file is counted up front, atomically.
# API_ANON is counted after because only then is it known that DRF found no
# user (no token, or a bad one).
COUNTED_AFTER = frozenset({PAGE, API_ANON})

# URL name -> scope, or {method: scope} with "*" for the other methods.
# API means "the DRF throttles only" (per user, per anonymous IP); a scope
# under an API name is counted by ``kreo.throttles.ScopeThrottle`` as well.
# Names ending in ":*" cover a whole namespace (the admin's generated URLs).
SCOPES: dict[str, str | dict[str, str]] = {
    "home": PAGE,
    "accounts:login": PAGE,
    "accounts:login-otp": PAGE,
    "accounts:logout": PAGE,
    "accounts:signup": PAGE,
    "accounts:signup-done": PAGE,
    "accounts:resend": PAGE,
    "accounts:verify": PAGE,
    "accounts:password-reset": PAGE,
    "accounts:password-reset-done": PAGE,
    "accounts:password-reset-confirm": {"POST": PASSWORD, "*": PAGE},
    "accounts:password-change": {"POST": PASSWORD, "*": PAGE},
    "accounts:captcha-challenge": PAGE,
    "accounts:security": PAGE,
    "accounts:time-zone": PAGE,
    "accounts:session-revoke": PAGE,
    "accounts:sessions-revoke-others": PAGE,
    "accounts:api-token-revoke": PAGE,
    "accounts:otp-enrol": PAGE,
    "accounts:otp-disable": {"POST": PASSWORD, "*": PAGE},
    "accounts:otp-recovery": PAGE,
    # Passkeys: the sign-in and second-step answers are also limited per IP
    # and per account in accounts.limits (the "login" and "otp" scopes).
    "accounts:passkey-login-options": PAGE,
    "accounts:passkey-login": PAGE,
    "accounts:passkey-register-options": PAGE,
    "accounts:passkey-add": PAGE,
    "accounts:passkey-remove": {"POST": PASSWORD, "*": PAGE},
    "oidc_authentication_init": OIDC,
    "oidc_authentication_callback": OIDC,
    "oidc_logout": OIDC,
    "oidc_link": OIDC,
    "oidc_reauth": OIDC,
    "projects:list": PAGE,
    "projects:create": PAGE,
    "projects:detail": PAGE,
    "projects:edit": PAGE,
    "projects:delete": PAGE,
    "projects:file-upload": UPLOAD,
    "projects:file-download": DOWNLOAD,
    "projects:file-preview": DOWNLOAD,
    # A list page shows many: counted as page views, not downloads.
    "projects:file-thumbnail": PAGE,
    "projects:file-rename": PAGE,
    "projects:file-delete": PAGE,
    "projects:members": PAGE,
    "projects:invitation-revoke": PAGE,
    "projects:invitation-accept": PAGE,
    "projects:member-role": PAGE,
    "projects:member-remove": PAGE,
    "privacy:export": PAGE,
    "privacy:export-download": DOWNLOAD,
    "privacy:account-delete": {"POST": ACCOUNT_DELETE, "*": PAGE},
    "status:index": PAGE,
    "status:history": PAGE,
    "status:incident": PAGE,
    "status:feed-atom": PAGE,
    "status:feed-rss": PAGE,
    "status:api-summary": PAGE,
    "status:api-status": PAGE,
    "status:api-components": PAGE,
    "status:api-incidents": PAGE,
    "status:api-incidents-unresolved": PAGE,
    "status:api-scheduled-maintenances": PAGE,
    "status:subscribe": PAGE,
    "status:subscribe-confirm": PAGE,
    "status:unsubscribe": PAGE,
    "api:token-create": {"POST": TOKEN, "*": API},
    "api:token-revoke": API,
    "api:project-list": API,
    "api:project-detail": API,
    "api:file-list": {"POST": UPLOAD, "*": API},
    "api:file-detail": API,
    "api:file-download": DOWNLOAD,
    "api:member-list": API,
    "api:member-detail": API,
    "api:invitation-list": API,
    "api:invitation-detail": API,
    "api-schema": API,
    # The admin: django-otp's OTPAdminSite, whose instance namespace this is.
    "otpadmin:*": PAGE,
}

# URL name -> why it has no limit.
EXEMPT: dict[str, str] = {
    "healthz": (
        "liveness probe: no database, no session, nothing to exhaust; a 429 "
        "would make the load balancer take a healthy pod out during a flood"
    ),
    "readyz": (
        "readiness probe from the kubelet and load balancer: a 429 would mark "
        "every pod unready under attack (a self-inflicted outage)"
    ),
    "metrics": (
        "bearer token or allow list checked before any work; a refused scrape "
        "would blind monitoring during the very flood it must show"
    ),
}

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNITS.update({"h": 3600, "hour": 3600, "d": 86400, "day": 86400})


@lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[int, int]:
    """``"30/15m"`` or ``"600/minute"`` -> (count, period in seconds)."""
    match = _RATE.match(rate.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"not a rate (count/period): {rate!r}")
    count, multiple, unit = match.groups()
    return int(count), int(multiple or 1) * _UNITS[unit]


def scope_for(view_name: str, method: str) -> str | None:
    """The scope of a request to ``view_name``; None when it is exempt.

    A name in neither table is limited as a page: fail closed at run time
    (the URL-built test fails first).
    """
    if view_name in EXEMPT:
        return None
    entry = SCOPES.get(view_name)
    if entry is None:
        entry = SCOPES.get(view_name.split(":", 1)[0] + ":*", PAGE)
    if isinstance(entry, dict):
        return entry.get(method, entry["*"])
    return entry


def subject(request: HttpRequest, user=None) -> str:
    """Who is counted: the signed-in user, else the client IP."""
    user = user if user is not None else getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


def rate(scope: str) -> tuple[int, int]:
    """(count, period) of ``scope``, read at request time."""
    if scope == API:
        return parse_rate(settings.KREO_API_RATE)
    return parse_rate(settings.KREO_REQUEST_RATES[scope])


def check(request: HttpRequest, scope: str, *, user=None) -> int:
    """Count one request at ``scope``; return seconds to wait (0 if allowed).

    Without the cache: ``CacheUnavailable`` for a ``FAIL_CLOSED`` scope,
    else 0 (logged).
    """
    try:
        return _check(request, scope, user)
    except CacheUnavailable as exc:
        if scope in FAIL_CLOSED:
            raise
        logger.warning("limits: %s not counted, the cache is out: %s", scope, exc)
        return 0


def _check(request: HttpRequest, scope: str, user) -> int:
    who = subject(request, user)
    limit, period = rate(scope)
    index, left = window(period)
    key = f"req:{scope}:{who}:{index}"
    if scope in COUNTED_AFTER:
        request.limit_key = (key, period)
        over = window_get(key) >= limit
    else:
        over = window_count(key, period) > limit
    if over:
        return max(left, 1)
    if scope == DOWNLOAD:
        limit, period = rate(DOWNLOAD_BYTES)
        index, left = window(period)
        if window_get(f"req:{DOWNLOAD_BYTES}:{who}:{index}") >= limit:
            return max(left, 1)
    return 0


def counted_after(request: HttpRequest) -> None:
    """Count a request of a ``COUNTED_AFTER`` scope that ``check`` let through
    (called when the response is closed, after its body went out)."""
    key, period = request.limit_key
    try:
        window_count(key, period)
    except CacheUnavailable as exc:
        logger.warning("limits: %s not counted, the cache is out: %s", key, exc)


def downloaded(request: HttpRequest, size: int) -> None:
    """Add the bytes of a sent download to the user's (or IP's) byte budget."""
    _, period = rate(DOWNLOAD_BYTES)
    index, _ = window(period)
    key = f"req:{DOWNLOAD_BYTES}:{subject(request)}:{index}"
    try:
        window_count(key, period, size)
    except CacheUnavailable as exc:
        logger.warning("limits: %s bytes not counted, the cache is out: %s", size, exc)


def refused(request: HttpRequest, scope: str, wait: int, *, user=None) -> None:
    """Audit one refusal, bounded per subject (``audit.bounded``).

    The request is marked so the audit middleware adds no second event.
    """
    request.limit_refused = scope
    who = subject(request, user)
    audit_record_bounded(
        bucket=f"429:{who}",
        event_type=RATE_LIMITED_EVENT,
        request=request,
        actor=user if user is not None and user.is_authenticated else None,
        outcome=Outcome.DENIED,
        status_code=429,
        error_code="rate_limited",
        error_description=TOO_MANY,
        details={"scope": scope, "retry_after": wait},
    )


def wants_json(request: HttpRequest) -> bool:
    return (
        request.path.startswith("/api/")
        or request.path.endswith(".json")
        or "application/json" in request.headers.get("Accept", "")
    )


def limited_response(request: HttpRequest, wait: int) -> HttpResponse:
    """429 with ``Retry-After``: JSON for API clients, else the site's page."""
    if wants_json(request):
        response = JsonResponse({"detail": TOO_MANY, "retry_after": wait}, status=429)
    else:
        response = error_response(request, 429, TOO_MANY)
    response["Retry-After"] = str(wait)
    return response


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with ``Retry-After`` when the counters' cache does not answer."""
    wait = settings.KREO_OUTAGE_RETRY_AFTER_SECONDS
    if wants_json(request):
        body = {"detail": UNAVAILABLE, "retry_after": wait}
        response = JsonResponse(body, status=503)
    else:
        response = error_response(request, 503, UNAVAILABLE)
    response["Retry-After"] = str(wait)
    return response
