import sys

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

ERROR_TEXTS = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing here, or you do not have access to it.",
    410: "This is gone for good.",
    413: "The upload is larger than the limit.",
    429: "Too many requests. Wait a moment, then try again.",
    500: "Something went wrong on our side. It has been logged.",
}


@require_safe
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers: no detail, no authentication."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return HttpResponse("unavailable", status=503, content_type="text/plain")
    return HttpResponse("ok", content_type="text/plain")


@require_safe
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 503 while the database is out or audit events are being lost.

    No authentication and no personal data: states and byte counts only. A
    full audit spool (events refused during an outage) stays reported until
    the next drain has recorded the loss on the trail.
    """
    from audit.spool import spool_status

    checks: dict = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    spooled = spool_status()
    checks["audit_spool"] = {
        "state": "full"
        if spooled["full"]
        else ("pending" if spooled["pending_bytes"] else "empty"),
        "pending_bytes": spooled["pending_bytes"],
        "max_bytes": spooled["max_bytes"],
        "refused_events": spooled["refused"],
    }
    ready = checks["database"] == "ok" and not spooled["full"]
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("projects:list")
    return redirect("accounts:login")


def error_response(
    request: HttpRequest, status: int, message: str | None = None
) -> HttpResponse:
    """An error page, or JSON under /api/, with a message a person can act on."""
    message = message or ERROR_TEXTS[status]
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return render(
        request, "error.html", {"status": status, "message": message}, status=status
    )


def bad_request(request, exception=None):
    return error_response(request, 400)


def permission_denied(request, exception=None):
    return error_response(request, 403)


CSRF_FAILED = (
    "This form has expired or was sent from another site. Go back, reload the "
    "page and try again."
)


def csrf_failure(request, reason=""):
    """The CSRF refusal in the site's layout, with what to do next."""
    return error_response(request, 403, CSRF_FAILED)


def page_not_found(request, exception=None):
    return error_response(request, 404)


def server_error(request):
    """The page of an unhandled error, safe with the database down.

    Django calls this inside its exception handler, so the error is at hand:
    a database outage answers 503 (``kreo.outage``); anything else a 500
    rendered with no request context (no ``request.user``, no session).
    """
    from kreo import outage

    exc = sys.exc_info()[1]
    if outage.database_unavailable(exc):
        return outage.unavailable_response(request, exc)
    return outage.static_page(request, 500, ERROR_TEXTS[500])
