from django.conf import settings

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
