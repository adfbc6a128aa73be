"""``GET /v1/models`` and ``GET /v1/models/{id}``: the providers' models as ``provider/model`` and the aliases.

OpenAI's list shape by default; the Anthropic SDK's when the request carries ``anthropic-version`` (its
``client.models.list()`` calls the same path).
"""

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .common import FrontError, ListedModel, front_caller, models_listing
from .openai import openai_error

# Anthropic's error ``type`` by status.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
}


def _anthropic_shape(request: HttpRequest) -> bool:
    return "anthropic-version" in request.headers


def _error(request: HttpRequest, error: FrontError) -> JsonResponse:
    if not _anthropic_shape(request):
        return openai_error(error)
    kind = ANTHROPIC_ERROR_TYPES.get(error.status, "api_error")
    response = JsonResponse({"type": "error", "error": {"type": kind, "message": error.message}}, status=error.status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


def _openai_model(model: ListedModel) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": model.id, "object": "model", "created": model.created, "owned_by": model.owned_by}
    if model.alias_of is not None:
        entry["platform"] = {"alias_of": model.alias_of, "description": model.description}
    return entry


def _anthropic_model(model: ListedModel) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.description or model.id,
        "created_at": datetime.fromtimestamp(model.created, tz=UTC).isoformat().replace("+00:00", "Z"),
    }


async def _listing(request: HttpRequest) -> list[ListedModel]:
    if request.method not in ("GET", "HEAD"):
        raise FrontError(405, "method_not_allowed", f"{request.method} is not allowed here.")
    await front_caller(request)
    return await models_listing()


@csrf_exempt
async def model_list(request: HttpRequest) -> JsonResponse:
    try:
        listed = await _listing(request)
    except FrontError as error:
        return _error(request, error)
    if _anthropic_shape(request):
        data = [_anthropic_model(model) for model in listed]
        return JsonResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )
    return JsonResponse({"object": "list", "data": [_openai_model(model) for model in listed]})


@csrf_exempt
async def model_detail(request: HttpRequest, model_id: str) -> JsonResponse:
    try:
        listed = await _listing(request)
        model = next((model for model in listed if model.id == model_id), None)
        if model is None:
            raise FrontError(
                404,
                "model_not_found",
                f"The model {model_id!r} does not exist: use an alias or provider/model from /v1/models.",
                param="model",
            )
    except FrontError as error:
        return _error(request, error)
    return JsonResponse(_anthropic_model(model) if _anthropic_shape(request) else _openai_model(model))


@csrf_exempt
async def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Anything under /v1 that is not an endpoint: a 404 in OpenAI's shape (Anthropic's with anthropic-version)."""
    return _error(request, FrontError(404, "unknown_url", f"Unknown request URL: {request.method} {request.path}."))
