"""One error body for the whole API: ``{"error": {"code": ..., "message": ..., "detail": ...}}``."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class InvalidParameter(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_parameter"
    default_detail = "A query parameter is invalid."


class ProductNotFound(exceptions.NotFound):
    default_code = "product_not_found"
    default_detail = "No such product."


class RecommendationsUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "recommendations_unavailable"
    default_detail = "Recommendations are temporarily unavailable."


def _message(detail) -> str:
    if isinstance(detail, list) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    return str(detail)


def exception_handler(exc, context):
    """DRF exception handler that wraps every error in the stable body shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            {"error": {"code": "server_error", "message": "Internal error; it has been logged."}},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    data = response.data
    code = exc.default_code if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(data, dict) and "detail" in data:
        body = {"error": {"code": getattr(exc.detail, "code", None) or code, "message": str(data["detail"])}}
    else:  # field validation errors
        body = {"error": {"code": code, "message": _message(data), "fields": data}}
    response.data = body
    return response
