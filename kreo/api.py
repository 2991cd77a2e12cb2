"""API plumbing shared by every app's API views."""

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler


class PayloadTooLarge(exceptions.ValidationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


def exception_handler(exc, context):
    """DRF's handler, plus Django's ValidationError as a 400 with its messages.

    An upload over the size limit answers 413, as the pages do; a database
    outage answers 503 with ``Retry-After`` (``kreo.outage``), never a 500.
    """
    from kreo import outage

    if outage.database_unavailable(exc):
        request = context["request"]
        return outage.unavailable_response(getattr(request, "_request", request), exc)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        codes = (
            {error.code for error in exc.error_list}
            if not hasattr(exc, "error_dict")
            else set()
        )
        kind = PayloadTooLarge if "too_large" in codes else exceptions.ValidationError
        exc = kind(detail=detail)
    return drf_exception_handler(exc, context)
