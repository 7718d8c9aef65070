from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.views import exception_handler


class Conflict(DjangoValidationError):
    """Refused because of the state things are in, not the request's content (another request
    claimed it first): the API answers 409; forms show it like any other field error."""


def api_exception_handler(exc, context):
    """Services raise Django's ValidationError; the API answers it as a 400 with its messages
    (a Conflict as a 409)."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        response = exception_handler(ValidationError(detail), context)
        if isinstance(exc, Conflict):
            response.status_code = status.HTTP_409_CONFLICT
        return response
    return exception_handler(exc, context)
