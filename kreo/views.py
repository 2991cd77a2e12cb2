import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

ERROR_TEXTS = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing here, or you do not have access to it.",
    410: "This is gone for good.",
    413: "The upload is larger than the limit.",
    429: "Too many requests. Wait a moment, then try again.",
    500: "Something went wrong on our side. It has been logged.",
}


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
