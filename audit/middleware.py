"""Request auditing: a correlation id for every request, an event for each one
that touches protected data or fails."""

import logging
from functools import partial

from auditlog.context import set_extra_data
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from audit import buffer
from audit.bounded import audit_record_bounded
from audit.context import (
    new_correlation_id,
    recorded_count,
    reset_correlation_id,
    set_correlation_id,
)
from audit.models import Outcome
from audit.services import DEVICE_COOKIE, DEVICE_MINTED, audit_record
from kreo.net import client_ip

logger = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
# Path prefix -> area; requests under these touch protected data.
AREAS = (("/admin/", "admin"), ("/api/", "api"), ("/projects/", "page"))
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEVICE_COOKIE_AGE = 400 * 24 * 3600


def request_event_type(area: str | None, method: str, status: int) -> str:
    """The event type of one request (see the README's table of types)."""
    if status >= 500:
        return "system.error"
    write = method in WRITE_METHODS
    if area == "admin":
        return "admin.change" if write else "admin.view"
    if area == "api":
        return "api.write" if write else "api.read"
    if area == "page":
        return "page.submit" if write else "page.view"
    return "http.denied" if status in (401, 403) else "http.client_error"


def request_outcome(status: int) -> str:
    if status >= 500:
        return Outcome.ERROR
    if status in (401, 403):
        return Outcome.DENIED
    if status >= 400:
        return Outcome.FAILURE
    return Outcome.SUCCESS


class AuditMiddleware:
    """Tag the request with a correlation id and record it when it matters.

    The id is generated here, never taken from the client (a client could
    otherwise tie its events to someone else's); it is returned in the
    ``X-Correlation-ID`` response header so that support can find the events.
    Query strings are not recorded: they may carry tokens.

    Each request is recorded once: a successful request whose service already
    recorded its own event (which carries the same request context and
    correlation id) gets no second, generic event; a failed one (4xx, 5xx)
    gets a request event with its status. Anonymous 4xx are bounded per
    client IP (``audit.bounded``: ``AUDIT_FLOOD_PER_MINUTE``, then one summary
    event a minute), and a request limit's 429 is audited by ``kreo.limits``.

    The request event is written when the server closes the response, after
    the body went out (as FileResponse closes its file), so its INSERT is not
    in the user's latency. Events that services record stay inside their own
    transaction.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.AUDIT_ENABLED:
            return self.get_response(request)
        cid = new_correlation_id()
        token = set_correlation_id(cid)
        request.audit_correlation_id = cid
        try:
            extra = {
                # The user is known only once AuthenticationMiddleware ran.
                "actor": SimpleLazyObject(lambda: getattr(request, "user", None)),
                "remote_addr": client_ip(request),
                "remote_port": None,
            }
            with set_extra_data(context_data=extra):
                response = self.get_response(request)
            buffer.request_answered()
            if self._wanted(request, response):
                # Django's own hook for work at close(); see FileResponse.
                response._resource_closers.append(
                    partial(self._record, request, response, cid)
                )
        finally:
            reset_correlation_id(token)
        response[CORRELATION_HEADER] = cid
        self._device_cookie(request, response)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        request.audit_exception = type(exception).__name__

    @staticmethod
    def _area(request: HttpRequest) -> str | None:
        return next((a for p, a in AREAS if request.path.startswith(p)), None)

    def _wanted(self, request: HttpRequest, response: HttpResponse) -> bool:
        if getattr(request, "limit_refused", None):
            return False  # kreo.limits audited the refusal, bounded
        if response.status_code >= 400:
            return True
        return self._area(request) is not None and not recorded_count()

    def _record(self, request: HttpRequest, response: HttpResponse, cid: str) -> None:
        status = response.status_code
        area = self._area(request)
        error_code = f"http.{status}" if status >= 400 else ""
        description = getattr(request, "audit_exception", "") or (
            response.reason_phrase if status >= 400 else ""
        )
        fields = {
            "event_type": request_event_type(area, request.method or "", status),
            "request": request,
            "outcome": request_outcome(status),
            "status_code": status,
            "error_code": error_code,
            "error_description": description,
            "correlation_id": cid,
        }
        try:
            if 400 <= status < 500 and self._anonymous(request):
                # A scanner's 404 flood must not be a flood of INSERTs.
                audit_record_bounded(bucket=f"anon4xx:{client_ip(request)}", **fields)
            else:
                audit_record(**fields)
        except Exception:
            # The response is already sent; a lost event is logged loudly.
            logger.exception("audit: could not record request %s", request.path)

    @staticmethod
    def _anonymous(request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        try:
            return not (user is not None and user.is_authenticated)
        except (OperationalError, InterfaceError):
            return True  # the session store is out with the database

    def _device_cookie(self, request: HttpRequest, response: HttpResponse) -> None:
        minted = getattr(request, DEVICE_MINTED, "")
        if minted:  # made for this request's sign-in (device_cookie_ensure)
            self._set_device_cookie(response, minted)
            return
        if request.COOKIES.get(DEVICE_COOKIE):
            return
        user = getattr(request, "user", None)
        try:
            signed_in = getattr(user, "is_authenticated", False)
        except (OperationalError, InterfaceError):
            return  # the session store is out with the database (kreo.outage)
        if not signed_in:
            return
        self._set_device_cookie(response, new_correlation_id())

    def _set_device_cookie(self, response: HttpResponse, value: str) -> None:
        response.set_cookie(
            DEVICE_COOKIE,
            value,
            max_age=DEVICE_COOKIE_AGE,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
