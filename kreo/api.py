"""API plumbing shared by every app's API views: errors, always in JSON.

Request rates are limited in ``kreo.throttles``; the OpenAPI schema, with every
error a view can answer, is built by ``kreo.schema``.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, renderers, status
from rest_framework.views import exception_handler as drf_exception_handler

BODY_TOO_LARGE = "The request body is larger than the {limit} byte limit."


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def exception_handler(exc, context):
    """DRF's handler, plus Django's ValidationError as a 400 with its messages.

    An upload over the size limit answers 413 with a detail, as the pages do;
    so does a JSON body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's own
    answer would be a 400 and a logged traceback). A database outage answers
    503 with ``Retry-After`` (``kreo.outage``), never a 500. Every error is
    rendered as JSON, even when the client accepted only YAML (the schema) or
    a file type (a download).
    """
    from kreo import outage

    if outage.database_unavailable(exc):
        request = context["request"]
        return outage.unavailable_response(getattr(request, "_request", request), exc)
    if isinstance(exc, RequestDataTooBig):
        exc = BodyTooLarge(
            BODY_TOO_LARGE.format(limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        )
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        codes = (
            {error.code for error in exc.error_list}
            if not hasattr(exc, "error_dict")
            else set()
        )
        if "too_large" in codes:
            exc = BodyTooLarge(" ".join(exc.messages))
        else:
            exc = exceptions.ValidationError(detail=detail)
    request = context.get("request")
    if request is not None:
        request.accepted_renderer = renderers.JSONRenderer()
        request.accepted_media_type = "application/json"
    return drf_exception_handler(exc, context)


class AnyMediaRenderer(renderers.BaseRenderer):
    """Lets a download answer any Accept header: the view sets the file's type.

    It never renders a body itself: a download is a streamed Django response,
    and errors are rendered as JSON by ``exception_handler``.
    """

    media_type = "*/*"
    format = "file"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)
