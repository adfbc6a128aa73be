"""The one place that turns any error into the API's JSON shape.

Every error body is ``{"error": {"code", "message", "details"}}``. Services raise
``platform_site.exceptions`` classes; DRF and Django errors are reshaped here too.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .exceptions import REDIS_AWAY, ApplicationError, RedisUnavailable


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _first_message(detail: Any) -> str:
    """A readable one-liner from DRF's nested validation detail."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            inner = _first_message(value)
            return inner if field == "non_field_errors" else f"{field}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, REDIS_AWAY):  # whatever has no fallback without Redis: 503, not 500
        exc = RedisUnavailable()
    if isinstance(exc, ApplicationError):
        error_response = Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            error_response["Retry-After"] = str(retry_after)
        return error_response

    if isinstance(exc, RequestDataTooBig):
        return Response(
            error_body("request_too_large", "Request body exceeds the allowed size."),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )

    # DRF answers these two Django exceptions as its own NotFound and PermissionDenied: shape them alike.
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied(*exc.args)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None

    if isinstance(exc, drf_exceptions.ValidationError):
        response.data = error_body("invalid", _first_message(exc.detail), exc.detail)
    elif isinstance(exc, drf_exceptions.APIException):
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        response.data = error_body(str(code), _first_message(exc.detail))
    else:
        response.data = error_body("error", str(response.data))
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


# Exempt: it changes nothing, and CSRF's HTML 403 would hide the 404 of a write to an unknown API path.
@csrf_exempt
def api_not_found(request: HttpRequest) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No such resource: {request.path}"), status=404)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return defaults.server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: the API's JSON 403 under /api/, Django's page elsewhere."""
    if _wants_json(request):
        return JsonResponse(error_body("csrf_failed", f"CSRF check failed: {reason}"), status=403)
    return csrf.csrf_failure(request, reason)


def api_safe_methods_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the HTML views under /api/ (the docs page): other methods get the JSON 405, not an HTML one."""

    @csrf_exempt
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            message = f'Method "{request.method}" not allowed.'
            response = JsonResponse(error_body("method_not_allowed", message), status=405)
            response["Allow"] = "GET, HEAD, OPTIONS"
            return response
        return view(request, *args, **kwargs)

    return wrapper


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body("request_too_large", "Request body exceeds the allowed size."), status=413)
    if _wants_json(request):
        return JsonResponse(error_body("bad_request", "Bad request."), status=400)
    return defaults.bad_request(request, exception)
