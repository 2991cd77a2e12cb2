"""API plumbing shared by every app's API views."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

BODY_TOO_LARGE = "The request body is larger than the {limit} byte limit."


class PayloadTooLarge(exceptions.ValidationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


def exception_handler(exc, context):
    """DRF's handler, plus Django's ValidationError as a 400 with its messages.

    An upload over the size limit answers 413, as the pages do; so does a JSON
    body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (Django's own answer would be a
    400 and a logged traceback).
    """
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
        kind = PayloadTooLarge if "too_large" in codes else exceptions.ValidationError
        exc = kind(detail=detail)
    return drf_exception_handler(exc, context)
