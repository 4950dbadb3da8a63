"""One error body for the whole API: ``{"error": {"code": ..., "message": ..., ...}}``.

Codes are stable: clients may switch on them. Besides ``code`` and ``message`` an error
may carry ``fields`` (validation errors per field), ``invalid`` (the bad events of a
batch, by index) or ``retry_after`` (seconds, with a ``Retry-After`` header, on 429).
"""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# DRF's own exceptions, mapped onto our stable codes.
DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


class InvalidParameter(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"
    default_detail = "A query parameter is invalid."


class ProductNotFound(exceptions.NotFound):
    default_code = "product_not_found"
    default_detail = "No such product."


class UserNotFound(exceptions.NotFound):
    default_code = "user_not_found"
    default_detail = "No such user."


class InvalidImage(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_image"
    default_detail = "The file is not a usable image."


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class SearchBusy(exceptions.Throttled):
    """The process decodes as many photos as it may (``SEARCH_MAX_CONCURRENT_DECODES``): 429, retry shortly."""

    default_code = "search_busy"
    default_detail = "Too many photos are being searched right now; try again in a moment."


class InvalidEvents(exceptions.APIException):
    """Some events of a batch are invalid; ``invalid`` lists them and nothing was recorded."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_events"
    default_detail = "Some events are invalid; nothing was recorded."

    def __init__(self, invalid: list[dict], total: int) -> None:
        super().__init__(f"{len(invalid)} of {total} events are invalid; nothing was recorded.")
        self.invalid = invalid


class ServerOnlyEvents(exceptions.PermissionDenied):
    """Purchases and ratings from a shopper's own client (``invalid`` lists them): 403, nothing recorded."""

    default_code = "server_only_events"
    default_detail = "Purchases and ratings are accepted only from server clients (token)."

    def __init__(self, indexes: list[int], total: int) -> None:
        super().__init__(
            f"Purchases and ratings are accepted only from server clients (token) and the shop's own order "
            f"signals, not from a shopper's browser or session; {len(indexes)} of {total} events are such, "
            "and nothing was recorded."
        )
        self.invalid = [
            {"index": i, "fields": {"type": ["Only server clients may post this event type."]}} for i in indexes
        ]


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"
    default_detail = "This Idempotency-Key was already used with a different request body."


class RecommendationsUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "recommendations_unavailable"
    default_detail = "Recommendations are temporarily unavailable."


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "service_unavailable"
    default_detail = "The service is temporarily unavailable; retry later."


def _message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    return str(detail)


def _translate(exc: Exception) -> Exception:
    """Django and database errors as API exceptions (the rest is DRF's or ours)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or None)
    if isinstance(exc, PermissionDenied):
        return exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(str(exc) or None)
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError(str(exc) or None)
    if isinstance(exc, DatabaseError):
        logger.warning("database error in the API: %s", exc)
        return ServiceUnavailable()
    from ..uploads import NO_SPACE_MESSAGE, out_of_space

    if out_of_space(exc):  # spooling an upload to a full disk
        logger.warning("upload refused: %s", exc)
        return ServiceUnavailable(NO_SPACE_MESSAGE)
    return exc


def _code(exc: exceptions.APIException) -> str:
    for cls in type(exc).__mro__:
        if cls in DRF_CODES:
            return DRF_CODES[cls]
        if cls is exceptions.APIException:
            break
        if "default_code" in vars(cls):
            return cls.default_code
    return exc.default_code


def error_body(exc: exceptions.APIException, data) -> dict:
    """The ``{"error": {...}}`` body of an API exception whose DRF rendering is ``data``."""
    if isinstance(data, dict) and set(data) == {"detail"}:
        error = {"code": _code(exc), "message": str(data["detail"])}
    elif not isinstance(data, dict):
        error = {"code": _code(exc), "message": _message(data)}
    else:  # field validation errors
        error = {"code": _code(exc), "message": _message(data), "fields": data}
    if isinstance(exc, InvalidEvents | ServerOnlyEvents):
        error["invalid"] = exc.invalid
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        error["retry_after"] = max(1, round(exc.wait))
    return {"error": error}


def exception_handler(exc, context):
    """DRF exception handler that wraps every error in the stable body shape."""
    from rest_framework.views import exception_handler as drf_exception_handler  # views import our throttle

    exc = _translate(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            {"error": {"code": "server_error", "message": "Internal error; it has been logged."}},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    response.data = error_body(exc, response.data)
    return response
