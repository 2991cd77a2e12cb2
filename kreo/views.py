from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

ERROR_TEXTS = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing here, or you do not have access to it.",
    413: "The upload is larger than the limit.",
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


def page_not_found(request, exception=None):
    return error_response(request, 404)


def server_error(request):
    return error_response(request, 500)
