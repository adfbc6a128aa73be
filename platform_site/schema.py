"""The OpenAPI schema's shared parts: the error body and the errors every operation can answer.

``AutoSchema`` (DRF's DEFAULT_SCHEMA_CLASS) adds to each operation the error
statuses it can really answer, each with the ``Error`` body platform_site.errors
produces, unless the view documents that status itself. A view adds the ones
only it answers (409, 502, 503) with ``error_responses(...)`` in its
``extend_schema(responses=...)``.
"""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers

EVENT_STREAM = "text/event-stream"

# A string without NUL characters: DRF's CharField refuses them (and PostgreSQL cannot store them).
NO_NUL_PATTERN = r"^[^\x00]*$"
# Whitespace as Python's str.strip() (DRF's trimming) sees it, spelled out: a regex's \s differs (ECMA's
# leaves out \x1c-\x1f and \x85, and counts \ufeff in).
PY_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# The same, with at least one character that is not whitespace: what a trimmed, non-blank field accepts.
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{PY_WHITESPACE}][^\x00]*$"


class ErrorInfoSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. `invalid`, `not_found`, `turn_in_progress`.")
    message = serializers.CharField(help_text="For people.")
    details = serializers.JSONField(
        allow_null=True, help_text="Validation errors per field (400), or what else the code carries; else null."
    )

    class Meta:
        ref_name = "ErrorInfo"


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API (platform_site.errors)."""

    error = ErrorInfoSerializer()

    class Meta:
        ref_name = "Error"


class ServerSentEventSerializer(serializers.Serializer):
    """One Server-Sent Event: ``event: <type>`` and a ``data:`` line holding the event as JSON."""

    event = serializers.CharField(help_text="The event's type; `error` for an error.")
    # A declared field: the serializer metaclass takes it off the class, so Serializer.data stands.
    data = serializers.CharField(help_text="The event as a JSON object (an error: the `Error` body).")  # type: ignore[assignment]

    class Meta:
        ref_name = "ServerSentEvent"


ERROR_DESCRIPTIONS = {
    400: "Invalid request: `details` holds the messages per field.",
    401: "No credentials, or an invalid, revoked or expired API key.",
    403: "Not allowed: staff only, owner only, or a browser session's write without its CSRF token.",
    404: "Not found (another user's object is not found too), or a page past the last.",
    409: "Conflict with the current state.",
    413: "Request body larger than `MAX_REQUEST_BYTES`.",
    415: "Request body is not JSON.",
    429: "Rate limited: retry after `Retry-After` seconds.",
    502: "A server the platform depends on answered with an error.",
    503: "A server the platform depends on is unavailable.",
}


# Not required: a provider's own 429 (a turn's TurnResult) may come without one.
RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """``extend_schema(responses=...)`` entries for error statuses only this view answers."""
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in statuses}


def _parameter_names(operation: dict[str, Any], location: str) -> set[str]:
    return {parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == location}


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for status in self._error_statuses(operation):
            responses.setdefault(str(status), self._error_response(status))
        for status, response in responses.items():
            # An error before an event stream starts is one `error` event (chats.apis.EventStreamRenderer).
            if status >= "400" and EVENT_STREAM in response.get("content", {}):
                response["content"][EVENT_STREAM] = {"schema": self._event_ref()}
            if status == "429":
                response.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _event_ref(self) -> dict[str, str]:
        return self.resolve_serializer(ServerSentEventSerializer, "response").ref

    def _error_statuses(self, operation: dict[str, Any]) -> set[int]:
        """The error statuses DRF and the platform answer for this operation, whatever the view does."""
        statuses = {429}  # every request counts on the caller's rate limit
        view_permissions = self.view.get_permissions()
        if not any(isinstance(p, permissions.AllowAny) for p in view_permissions):
            statuses.add(401)
        if self.method not in permissions.SAFE_METHODS or any(
            isinstance(p, permissions.IsAdminUser) for p in view_permissions
        ):
            statuses.add(403)  # staff only; and a session-authenticated write needs its CSRF token
        query = _parameter_names(operation, "query")
        # A path's object may not exist; a page may be past the last; ?format= may name no renderer.
        if _parameter_names(operation, "path") or {"page", "format"} & query:
            statuses.add(404)
        if "requestBody" in operation:
            statuses |= {400, 413, 415}
        if query - {"page", "format"}:
            statuses.add(400)
        return statuses

    def _error_response(self, status: int) -> dict[str, Any]:
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        content = {media_type: {"schema": error} for media_type in self.map_renderers("media_type")}
        return {"content": content, "description": ERROR_DESCRIPTIONS[status]}

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and isinstance(schema, dict)
            and schema.get("type") == "string"
            and not {"pattern", "format", "enum", "oneOf", "anyOf"} & schema.keys()
        ):
            pattern = getattr(field, "schema_pattern", None)
            if pattern is None:
                pattern = NO_NUL_PATTERN if field.allow_blank or not field.trim_whitespace else NOT_BLANK_PATTERN
            schema["pattern"] = pattern
        return schema
