"""Session control: idle and absolute timeouts, revocation, required 2FA;
and the one place where an outage of the shared cache or the task broker
becomes a 503."""

import logging
import zoneinfo

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from accounts import services
from accounts.policy import otp_required_for
from audit.models import Outcome
from audit.services import audit_record
from kreo.cache import CacheUnavailable
from kreo.views import error_response

logger = logging.getLogger(__name__)

SIGN_IN_UNAVAILABLE = (
    "Sign-in is temporarily unavailable. Please try again in a minute."
)
ACTION_UNAVAILABLE = "This is temporarily unavailable. Please try again in a minute."
SESSION_ENDED = "Your session ended. Please sign in again."
TWO_FACTOR_NEEDED = "Your account needs two-factor authentication: set it up first."

# Pages a signed-in user who still has to enrol in 2FA may open.
ENROL_ALLOWED = (
    "accounts:otp-enrol",
    "accounts:passkey-register-options",
    "accounts:passkey-add",
    "accounts:logout",
)


class SessionControlMiddleware:
    """End sessions that are idle, too old or revoked; make required 2FA happen.

    Runs after the authentication and OTP middleware, so ``request.user`` is
    known and ``is_verified()`` answers.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ended = services.session_check(request=request)
            if ended:
                messages.info(request, SESSION_ENDED)
                return redirect(settings.LOGIN_URL)
            if otp_required_for(user) and not user.is_verified():
                return self._enrol(request)
        return self.get_response(request)

    def _enrol(self, request):
        allowed = {reverse(name) for name in ENROL_ALLOWED}
        static = "/" + settings.STATIC_URL.lstrip("/")
        if request.path in allowed or request.path.startswith(static):
            return self.get_response(request)
        if request.path.startswith("/api/"):
            return error_response(request, 403, TWO_FACTOR_NEEDED)
        messages.warning(request, TWO_FACTOR_NEEDED)
        return redirect("accounts:otp-enrol")


class DependencyOutageMiddleware:
    """Answer 503 when the shared cache or the task broker does not answer.

    Sign-in, its 2FA step, sign-up, password reset, resend and every other
    rate-limited view need the counters in the shared cache (Redis, or
    ``var/cache`` on the embedded default). Without them they fail closed:
    ``kreo.cache`` raises ``CacheUnavailable`` and this hook answers 503 with
    ``Retry-After``, a page in the site's layout or JSON for API clients.
    A task that cannot be queued (the broker is the same Redis) answers the
    same way, except account mail, which is logged and audited instead
    (``accounts.services._mail_task_send``: answering differently for a real
    account would tell who has one). Each refused POST (an attempt: sign-in,
    code, sign-up, reset) is audited; the database is up. Views that need
    neither keep working, and the next request tries again, so service
    returns by itself with the cache.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(
        self, request: HttpRequest, exception: Exception
    ) -> HttpResponse | None:
        if not isinstance(exception, CacheUnavailable | BrokerUnavailable):
            return None
        dependency = "cache" if isinstance(exception, CacheUnavailable) else "broker"
        logger.error("%s unavailable on %s: %s", dependency, request.path, exception)
        match = request.resolver_match
        sign_in = match is not None and match.app_name == "accounts"
        message = SIGN_IN_UNAVAILABLE if sign_in else ACTION_UNAVAILABLE
        if request.method == "POST":
            self._audit(request, dependency, message, sign_in)
        wait = settings.KREO_OUTAGE_RETRY_AFTER_SECONDS
        accept = request.headers.get("Accept", "")
        if request.path.startswith("/api/") or "application/json" in accept:
            body = {"detail": message, "retry_after": wait}
            response = JsonResponse(body, status=503)
        else:
            response = error_response(request, 503, message)
        response["Retry-After"] = str(wait)
        return response

    @staticmethod
    def _audit(request: HttpRequest, dependency: str, message: str, sign_in: bool):
        tried = request.POST.get("username") or request.POST.get("email") or ""
        try:
            audit_record(
                event_type="auth.unavailable" if sign_in else "system.unavailable",
                request=request,
                outcome=Outcome.ERROR,
                actor_label=tried[:254],
                status_code=503,
                error_code=f"{dependency}_unavailable",
                error_description=message,
                details={"dependency": dependency, "path": request.path},
            )
        except Exception:
            # The database is down as well: still a 503, not a 500; the
            # request's own event goes the audit middleware's way.
            logger.exception("audit: could not record the refusal of %s", request.path)


class TimeZoneMiddleware:
    """Show times in the signed-in user's zone (UTC for everyone else).

    Reads ``request.user`` only where the session already named a user, so an
    anonymous request costs no query.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        zone = None
        if user is not None and user.is_authenticated and user.time_zone != "UTC":
            try:
                zone = zoneinfo.ZoneInfo(user.time_zone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                zone = None
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
