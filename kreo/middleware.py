from functools import partial

from django.conf import settings
from rest_framework.views import APIView

from kreo import limits
from kreo.cache import CacheUnavailable
from kreo.views import error_response

UPLOAD_TOO_LARGE = "The upload is larger than the {limit} limit. Nothing was saved."

# Room for the multipart envelope and the other form fields of an upload.
ENVELOPE = 1024 * 1024


def _mb() -> str:
    limit = settings.KREO_MAX_UPLOAD_BYTES
    return f"{limit / 2**20:.0f} MB" if limit >= 2**20 else f"{limit} bytes"


class RequestSizeLimitMiddleware:
    """Refuse a body larger than the upload limit before anything reads it.

    Without this, CSRF checking would parse (and spool to disk) the whole
    multipart body of an oversized upload before the view could say no.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(request, 400)
        if length > settings.KREO_MAX_UPLOAD_BYTES + ENVELOPE:
            return error_response(request, 413, UPLOAD_TOO_LARGE.format(limit=_mb()))
        return self.get_response(request)


class RequestLimitMiddleware:
    """Count each request against its scope in ``kreo.limits``; answer 429
    with ``Retry-After`` past the rate.

    Checked in ``process_view``, when the URL name is known and after the
    session and user middleware ran, so a signed-in user is counted as one
    person from any address. Page views are read here and counted when the
    response closes (``limits.COUNTED_AFTER``). DRF views are counted per
    user and per scope by their throttles (``kreo.throttles``: DRF knows the
    token's user). Their anonymous callers are counted here, per client IP,
    after the response: DRF refuses them (401, a bad token) before its
    throttles run, so a flood of them would otherwise be counted nowhere. The
    bytes of a sent download (pages and API) are added to the byte budget on
    the way out.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        scope = getattr(request, "limit_scope", None)
        if scope is None:
            return response
        if (
            getattr(request, "limit_key", None) is not None
            and not getattr(request, "limit_refused", None)
            # A 5xx (an outage: the database out, a token unreadable) is the
            # server's failure, not the client's request rate.
            and response.status_code < 500
            and not (getattr(request, "limit_api", False) and _signed_in(request))
        ):
            # Django's hook for work at close(), after the body went out.
            response._resource_closers.append(partial(limits.counted_after, request))
        if (
            scope == limits.DOWNLOAD
            and response.status_code == 200
            and request.method == "GET"
        ):
            size = response.get("Content-Length")
            if size and size.isdigit():
                response._resource_closers.append(
                    partial(limits.downloaded, request, int(size))
                )
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not settings.KREO_LIMITS_ENABLED:
            return None
        scope = limits.scope_for(request.resolver_match.view_name, request.method)
        if scope is None:
            return None
        request.limit_scope = scope
        cls = getattr(view_func, "cls", None)
        api = cls is not None and issubclass(cls, APIView)
        try:
            if not api:
                wait = limits.check(request, scope)
            elif _signed_in(request):
                return None  # a session: the DRF throttles count it
            else:
                request.limit_api = True
                scope = limits.API_ANON
                wait = limits.check(request, scope)
        except CacheUnavailable:
            return limits.unavailable_response(request)
        if not wait:
            return None
        limits.refused(request, scope, wait)
        return limits.limited_response(request, wait)


def _signed_in(request) -> bool:
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated
