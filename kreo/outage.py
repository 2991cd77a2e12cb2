"""Answer 503 (never 500) while the database is unreachable.

A database that is down, restarting or refusing connections raises
``OperationalError`` or ``InterfaceError`` wherever the request first touches
it: a view, the session store behind ``request.user``, a middleware. Views'
errors reach ``OutageMiddleware.process_exception`` (and the API's exception
handler), and the middleware itself loads the session and user; errors
raised anywhere else reach ``handler500`` (``kreo.views.server_error``).
All of them answer here: 503 with ``Retry-After``, the site's layout or JSON
under ``/api/``, rendered with no request context so that nothing on the
error path queries the database or the session again.

Nothing needs restarting when the database returns: Django opens a new
connection for the next request (``CONN_HEALTH_CHECKS`` drops a broken
persistent one first).
"""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.cache import add_never_cache_headers

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = (
    "Kreo is temporarily unavailable: its database cannot be reached. "
    "Nothing you saved is lost. Please try again in a minute."
)
SERVER_ERROR = "Something went wrong on our side. It has been logged."

UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def database_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an error it was raised from) says the database is out."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UNAVAILABLE_ERRORS):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_after() -> int:
    return settings.KREO_OUTAGE_RETRY_AFTER_SECONDS


def static_page(request: HttpRequest, status: int, message: str) -> HttpResponse:
    """An error in the site's layout or JSON, built without touching the database.

    The template gets no request, so no context processor runs: no
    ``request.user``, no session, no messages.
    """
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message}, status=status)
    else:
        template = f"{status}.html" if status in (500, 503) else "error.html"
        html = loader.render_to_string(
            template,
            {
                "status": status,
                "message": message,
                "kreo_release": settings.KREO_RELEASE,
            },
        )
        response = HttpResponse(html, status=status)
    add_never_cache_headers(response)
    return response


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """503 with ``Retry-After`` for a request the database outage stopped."""
    logger.warning(
        "database unavailable: %s %s answered 503 (%s: %s)",
        request.method,
        request.path,
        type(exc).__name__,
        str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "",
    )
    request.audit_exception = type(exc).__name__
    response = static_page(request, 503, DATABASE_UNAVAILABLE)
    response["Retry-After"] = str(_retry_after())
    return response


class OutageMiddleware:
    """Answer 503 when the session store or a view finds the database out.

    Placed after the authentication and OTP middleware: it loads
    ``request.user`` (which every page needs anyway) so that an outage is
    answered here, before later middleware would raise it as a crash; a
    view's database error reaches ``process_exception``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        try:
            if user is not None:
                user.is_authenticated  # noqa: B018 - loads the session and user
        except UNAVAILABLE_ERRORS as exc:
            return unavailable_response(request, exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if database_unavailable(exception):
            return unavailable_response(request, exception)
        return None
