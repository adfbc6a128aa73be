"""A local Anthropic Messages API: scripted replies as JSON or SSE, and the real API's request rules.

Routes: ``POST /v1/messages`` (JSON, or SSE with ``event:`` lines when the body
says ``stream: true``), ``POST /v1/messages/count_tokens`` and ``GET /v1/models``
(cursor-paginated). Every message request is validated like the real API does;
an invalid one gets a 400 ``invalid_request_error`` and does not consume a
scripted reply. A count is ``count_tokens_of(body)``: the words of the prompt.

A ``Turn``'s ``input_tokens`` is the whole prompt, cached tokens included; on
this wire ``input_tokens`` excludes them, so the fake subtracts ``cached_tokens``
and reports them as ``cache_read_input_tokens``. Thinking signatures are
``signature_for(thinking)``, and replayed thinking is checked against it, as the
real API verifies its signatures.
"""

import base64
import binascii
import hashlib
import json
import re
import secrets
from typing import Any

from .wire import Fail, JsonReply, Recorded, Reply, StreamReply, Turn, WireServer, pieces, sse

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STOP_REASONS = {"end": "end_turn", "length": "max_tokens", "refused": "refusal", "tool_calls": "tool_use"}

REQUEST_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "output_config",
    "cache_control",
    "inference_geo",
    "speed",
    "diagnostics",
    "context_management",
    "mcp_servers",
}
# count_tokens takes the prompt-shaping fields of a Messages request, but no max_tokens, stream or sampling.
COUNT_FIELDS = {
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "speed",
    "context_management",
    "mcp_servers",
}
# Keys whose values are structure, not prompt text: they add no words to a count.
_UNCOUNTED_KEYS = {"type", "role"}
BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "document": {"type", "source", "title", "context", "citations", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control", "caller"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
    "thinking": {"type", "thinking", "signature"},
    "redacted_thinking": {"type", "data"},
}
USER_BLOCKS = {"text", "image", "document", "tool_result"}
IMAGE_MEDIA_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
ASSISTANT_BLOCKS = {"text", "thinking", "redacted_thinking", "tool_use"}
TOOL_FIELDS = {
    "type",
    "name",
    "description",
    "input_schema",
    "cache_control",
    "strict",
    "input_examples",
    "defer_loading",
    "allowed_callers",
    "eager_input_streaming",
}

DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "type": "model",
        "id": "claude-sonnet-4-6",
        "display_name": "Claude Sonnet 4.6",
        "created_at": "2026-02-17T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 1000000,
        "max_tokens": 64000,
    },
    {
        "type": "model",
        "id": "claude-sonnet-4-5",
        "display_name": "Claude Sonnet 4.5",
        "created_at": "2025-09-29T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200000,
        "max_tokens": 64000,
    },
    {
        "type": "model",
        "id": "claude-haiku-4-5",
        "display_name": "Claude Haiku 4.5",
        "created_at": "2025-10-01T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200000,
        "max_tokens": 64000,
    },
]


def signature_for(thinking: str) -> str:
    """The signature this fake gives a thinking block, and the only one it accepts back for that text."""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:24]


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key not in _UNCOUNTED_KEYS)
    return 0


def count_tokens_of(body: dict[str, Any]) -> int:
    """This fake's token count of a prompt: the whitespace-separated words of every string in its system, messages
    and tools, except ``type`` and ``role`` values. Deterministic, so tests can work it out by hand."""
    return sum(_words(body.get(name)) for name in ("system", "messages", "tools"))


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def _image_source_problems(source: Any, at: str) -> list[str]:
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "url":
        url = source.get("url")
        if set(source) != {"type", "url"} or not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return [f"{at}: a url source takes only an http(s) url"]
        return []
    if kind != "base64" or set(source) != {"type", "media_type", "data"}:
        return [f"{at}: Input should be a base64, url or file image source"]
    if source["media_type"] not in IMAGE_MEDIA_TYPES:
        return [f"{at}.media_type: Input should be one of {', '.join(sorted(IMAGE_MEDIA_TYPES))}"]
    try:
        base64.b64decode(source["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        return [f"{at}.data: invalid base64 data"]
    return []


class AnthropicWire(WireServer):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        self.add_route("POST", "/v1/messages", self._messages)
        self.add_route("POST", "/v1/messages/count_tokens", self._count_tokens)
        self.add_route("GET", "/v1/models", self._list_models)

    def reset(self) -> None:
        super().reset()
        self.models = [dict(model) for model in DEFAULT_MODELS]

    # --- routes ------------------------------------------------------------------------

    def _messages(self, request: Recorded, _match: re.Match[str]) -> Reply:
        if problem := self._auth_problem(request):
            return problem
        try:
            body = request.json
        except ValueError as exc:
            return self._error(400, f"There was an error parsing the body: {exc}")
        problems = self.validate(body)
        if problems:
            return self._error(400, "; ".join(problems))
        reply = self.next_reply()
        if isinstance(reply, Fail):
            return self._fail(reply)
        if body.get("stream"):
            return StreamReply(200, "text/event-stream", self._sse(reply, body["model"]), self._headers())
        return JsonReply(200, self._message(reply, body["model"]), self._headers())

    def _count_tokens(self, request: Recorded, _match: re.Match[str]) -> Reply:
        if problem := self._auth_problem(request):
            return problem
        try:
            body = request.json
        except ValueError as exc:
            return self._error(400, f"There was an error parsing the body: {exc}")
        problems = self.validate_count(body)
        if problems:
            return self._error(400, "; ".join(problems))
        if fail := self._pop_fail():
            return self._fail(fail)
        return JsonReply(200, {"input_tokens": count_tokens_of(body)}, self._headers())

    def _list_models(self, request: Recorded, _match: re.Match[str]) -> Reply:
        if problem := self._auth_problem(request):
            return problem
        if fail := self._pop_fail():
            return self._fail(fail)
        raw_limit = request.query.get("limit", ["20"])[0]
        limit = int(raw_limit) if raw_limit.isdigit() else 0
        if not 1 <= limit <= 1000:
            return self._error(400, "limit: Input should be between 1 and 1000")
        ids = [model["id"] for model in self.models]
        start = 0
        if after := request.query.get("after_id"):
            start = ids.index(after[0]) + 1 if after[0] in ids else len(ids)
        page = self.models[start : start + limit]
        return JsonReply(
            200,
            {
                "data": page,
                "has_more": start + limit < len(self.models),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
            },
            self._headers(),
        )

    # --- validation --------------------------------------------------------------------

    def validate(self, body: Any) -> list[str]:
        """What the real Messages API would reject in this request body; empty when it is valid."""
        if not isinstance(body, dict):
            return ["The request body must be a JSON object."]
        problems = [f"{name}: Extra inputs are not permitted" for name in body if name not in REQUEST_FIELDS]
        if not isinstance(body.get("model"), str) or not body["model"]:
            problems.append("model: Field required")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            problems.append("max_tokens: Field required (an integer >= 1)")
            max_tokens = None
        problems += self._validate_system(body.get("system"))
        problems += self._validate_sampling(body, max_tokens)
        problems += self._validate_tools(body.get("tools"))
        problems += self._validate_tool_choice(body)
        problems += self._validate_output_config(body.get("output_config"))
        problems += self._validate_messages(body.get("messages"), thinking_on=self._thinking_on(body))
        return problems

    def validate_count(self, body: Any) -> list[str]:
        """What the real count_tokens endpoint would reject in this request body; empty when it is valid."""
        if not isinstance(body, dict):
            return ["The request body must be a JSON object."]
        problems = [f"{name}: Extra inputs are not permitted" for name in body if name not in COUNT_FIELDS]
        if not isinstance(body.get("model"), str) or not body["model"]:
            problems.append("model: Field required")
        thinking = body.get("thinking")
        if thinking is not None and (
            not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive")
        ):
            problems.append("thinking: type must be one of 'enabled', 'disabled', 'adaptive'")
        problems += self._validate_system(body.get("system"))
        problems += self._validate_tools(body.get("tools"))
        problems += self._validate_tool_choice(body)
        problems += self._validate_output_config(body.get("output_config"))
        problems += self._validate_messages(body.get("messages"), thinking_on=self._thinking_on(body))
        return problems

    @staticmethod
    def _thinking_on(body: dict[str, Any]) -> bool:
        thinking = body.get("thinking")
        return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")

    @staticmethod
    def _validate_system(system: Any) -> list[str]:
        if system is None or isinstance(system, str):
            return []
        if isinstance(system, list) and all(
            isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
            for block in system
        ):
            return []
        return ["system: Input should be a valid string or a list of text blocks"]

    def _validate_sampling(self, body: dict[str, Any], max_tokens: int | None) -> list[str]:
        problems: list[str] = []
        temperature = body.get("temperature")
        if temperature is not None and (
            not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 1
        ):
            problems.append("temperature: Input should be a number between 0 and 1")
        stop = body.get("stop_sequences")
        if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) and s.strip() for s in stop)):
            problems.append("stop_sequences: each stop sequence must be a string with non-whitespace characters")
        if "stream" in body and not isinstance(body["stream"], bool):
            problems.append("stream: Input should be a valid boolean")
        thinking = body.get("thinking")
        if thinking is None:
            return problems
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            return [*problems, "thinking: type must be one of 'enabled', 'disabled', 'adaptive'"]
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                problems.append("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            elif max_tokens is not None and budget >= max_tokens:
                problems.append("`max_tokens` must be greater than `thinking.budget_tokens`")
        if self._thinking_on(body) and temperature is not None and temperature != 1:
            problems.append("`temperature` may only be set to 1 when thinking is enabled")
        return problems

    @staticmethod
    def _validate_tools(tools: Any) -> list[str]:
        if tools is None:
            return []
        if not isinstance(tools, list):
            return ["tools: Input should be a valid list"]
        problems: list[str] = []
        names: set[str] = set()
        for index, tool in enumerate(tools):
            where = f"tools.{index}"
            if not isinstance(tool, dict):
                problems.append(f"{where}: Input should be an object")
                continue
            if tool.get("type") not in (None, "custom"):
                continue  # a server tool (web search, code execution): its own schema, not checked here
            problems += [f"{where}.{key}: Extra inputs are not permitted" for key in tool if key not in TOOL_FIELDS]
            name = tool.get("name")
            if not isinstance(name, str) or not TOOL_NAME_PATTERN.fullmatch(name):
                problems.append(f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            elif name in names:
                problems.append(f"tools: Tool names must be unique ({name!r} repeats)")
            else:
                names.add(name)
            if "description" in tool and not isinstance(tool["description"], str):
                problems.append(f"{where}.description: Input should be a valid string")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                problems.append(f"{where}.input_schema: Field required (a JSON Schema object)")
            elif schema.get("type") != "object":
                problems.append(f"{where}.input_schema.type: Input should be 'object'")
        return problems

    def _validate_tool_choice(self, body: dict[str, Any]) -> list[str]:
        choice = body.get("tool_choice")
        if choice is None:
            return []
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in ("auto", "any", "tool", "none"):
            return ["tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'"]
        names = {tool.get("name") for tool in body.get("tools") or [] if isinstance(tool, dict)}
        if kind == "tool" and choice.get("name") not in names:
            return [f"tool_choice.name: {choice.get('name')!r} is not one of the tools"]
        if kind in ("any", "tool") and self._thinking_on(body):
            return ["Thinking may not be enabled when tool_choice forces tool use."]
        return []

    @staticmethod
    def _validate_output_config(config: Any) -> list[str]:
        if config is None:
            return []
        if not isinstance(config, dict):
            return ["output_config: Input should be an object"]
        problems = [f"output_config.{key}: Extra inputs are not permitted" for key in config if key != "format"]
        output_format = config.get("format")
        if output_format is not None and (
            not isinstance(output_format, dict)
            or output_format.get("type") != "json_schema"
            or not isinstance(output_format.get("schema"), dict)
            or set(output_format) != {"type", "schema"}
        ):
            problems.append("output_config.format: Input should be {'type': 'json_schema', 'schema': {...}}")
        return problems

    def _validate_messages(self, messages: Any, *, thinking_on: bool) -> list[str]:
        if not isinstance(messages, list) or not messages:
            return ["messages: at least one message is required"]
        problems: list[str] = []
        seen_tool_use_ids: set[str] = set()
        for index, message in enumerate(messages):
            where = f"messages.{index}"
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                problems.append(f"{where}.role: Input should be 'user' or 'assistant'")
                continue
            role = message["role"]
            problems += [
                f"{where}.{key}: Extra inputs are not permitted" for key in message if key not in ("role", "content")
            ]
            if index == 0 and role != "user":
                problems.append(f"{where}: The first message must use the 'user' role")
            previous = messages[index - 1] if index else None
            if isinstance(previous, dict) and previous.get("role") == role:
                problems.append(
                    f"{where}: roles must alternate between 'user' and 'assistant' ({role!r} follows {role!r})"
                )
            problems += self._validate_content(message.get("content"), role, where, last=index == len(messages) - 1)
            for block in self._blocks(message):
                if block.get("type") == "tool_use" and isinstance(block.get("id"), str):
                    if block["id"] in seen_tool_use_ids:
                        problems.append(f"{where}: `tool_use` ids must be unique ({block['id']} repeats)")
                    seen_tool_use_ids.add(block["id"])
        if problems:
            return problems
        return self._validate_tool_pairing(messages, thinking_on=thinking_on)

    def _validate_content(self, content: Any, role: str, where: str, *, last: bool) -> list[str]:
        if isinstance(content, str):
            # Only a final assistant message (a prefill) may be empty.
            if not content.strip() and not (role == "assistant" and last):
                return [f"{where}.content: text content must contain non-whitespace text"]
            return []
        if not isinstance(content, list) or (not content and not (role == "assistant" and last)):
            return [f"{where}.content: Input should be a string or a non-empty list of content blocks"]
        problems: list[str] = []
        allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
        for position, block in enumerate(content):
            at = f"{where}.content.{position}"
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in allowed:
                problems.append(f"{at}: a {role} message cannot contain a {kind!r} block")
                continue
            problems += [
                f"{at}.{key}: Extra inputs are not permitted" for key in block if key not in BLOCK_FIELDS[kind]
            ]
            problems += self._validate_block(block, at)
        return problems

    @staticmethod
    def _validate_block(block: dict[str, Any], at: str) -> list[str]:
        kind = block["type"]
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str) or not text.strip():
                return [f"{at}.text: text content blocks must contain non-whitespace text"]
        elif kind == "tool_use":
            problems = []
            if not isinstance(block.get("id"), str) or not ID_PATTERN.fullmatch(block["id"]):
                problems.append(f"{at}.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            if not isinstance(block.get("name"), str) or not TOOL_NAME_PATTERN.fullmatch(block["name"]):
                problems.append(f"{at}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if not isinstance(block.get("input"), dict):
                problems.append(f"{at}.input: Input should be a valid dictionary")
            return problems
        elif kind == "tool_result":
            problems = []
            if not isinstance(block.get("tool_use_id"), str) or not ID_PATTERN.fullmatch(block["tool_use_id"]):
                problems.append(f"{at}.tool_use_id: String should match pattern '^[a-zA-Z0-9_-]+$'")
            content = block.get("content", "")
            if not isinstance(content, str) and not (
                isinstance(content, list)
                and all(isinstance(part, dict) and part.get("type") in ("text", "image") for part in content)
            ):
                problems.append(f"{at}.content: Input should be a string or a list of text/image blocks")
            if "is_error" in block and not isinstance(block["is_error"], bool):
                problems.append(f"{at}.is_error: Input should be a valid boolean")
            return problems
        elif kind == "thinking":
            if not isinstance(block.get("thinking"), str):
                return [f"{at}.thinking: Field required"]
            if not isinstance(block.get("signature"), str) or not block["signature"]:
                return [f"{at}.signature: Field required"]
            if block["signature"] != signature_for(block["thinking"]):
                return [f"{at}: Invalid `signature` in `thinking` block"]
        elif kind == "redacted_thinking" and (not isinstance(block.get("data"), str) or not block["data"]):
            return [f"{at}.data: Field required"]
        elif kind == "image":
            return _image_source_problems(block.get("source"), f"{at}.source")
        return []

    @staticmethod
    def _blocks(message: Any) -> list[dict[str, Any]]:
        content = message.get("content") if isinstance(message, dict) else None
        return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []

    def _validate_tool_pairing(self, messages: list[dict[str, Any]], *, thinking_on: bool) -> list[str]:
        problems: list[str] = []
        for index, message in enumerate(messages):
            blocks = self._blocks(message)
            if message["role"] == "assistant":
                calls = [block["id"] for block in blocks if block["type"] == "tool_use"]
                if not calls:
                    continue
                following = self._blocks(messages[index + 1]) if index + 1 < len(messages) else []
                answered = {block["tool_use_id"] for block in following if block["type"] == "tool_result"}
                missing = [call for call in calls if call not in answered]
                if missing:
                    problems.append(
                        f"messages.{index}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                        f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` block "
                        "in the next message."
                    )
                continue
            results = [block for block in blocks if block["type"] == "tool_result"]
            if not results:
                continue
            previous = self._blocks(messages[index - 1]) if index else []
            offered = {block["id"] for block in previous if block["type"] == "tool_use"}
            orphans = [block["tool_use_id"] for block in results if block["tool_use_id"] not in offered]
            if orphans:
                problems.append(
                    f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{', '.join(orphans)}. Each `tool_result` block must have a corresponding `tool_use` block "
                    "in the previous message."
                )
            answered_ids = [block["tool_use_id"] for block in results]
            if len(set(answered_ids)) != len(answered_ids):
                problems.append(f"messages.{index}.content: each `tool_use` id may be answered only once")
            first_other = next((i for i, block in enumerate(blocks) if block["type"] != "tool_result"), len(blocks))
            if any(block["type"] == "tool_result" for block in blocks[first_other:]):
                problems.append(
                    f"messages.{index}.content: `tool_result` blocks must come first in the user message, "
                    "before any other content"
                )
            is_last = index == len(messages) - 1
            if thinking_on and is_last and previous and previous[0]["type"] not in ("thinking", "redacted_thinking"):
                problems.append(
                    f"messages.{index - 1}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                    f"{previous[0]['type']!r}. When `thinking` is enabled, a final `assistant` message must start "
                    "with a thinking block."
                )
        return problems

    # --- rendering ---------------------------------------------------------------------

    def _auth_problem(self, request: Recorded) -> JsonReply | None:
        key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not key.strip():
            return self._error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        return None

    def _pop_fail(self) -> Fail | None:
        with self._lock:
            if self.script and isinstance(self.script[0], Fail):
                fail = self.script.popleft()
                assert isinstance(fail, Fail)
                return fail
        return None

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"request-id": f"req_{secrets.token_hex(12)}"}

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JsonReply:
        return JsonReply(status, error_body(status, message), {**self._headers(), **(headers or {})})

    def _fail(self, fail: Fail) -> JsonReply:
        headers = {"retry-after": f"{fail.retry_after:g}"} if fail.retry_after is not None else {}
        return self._error(fail.status, fail.message, headers)

    @staticmethod
    def _content(turn: Turn) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        if turn.thinking:
            content.append({"type": "thinking", "thinking": turn.thinking, "signature": signature_for(turn.thinking)})
        if turn.text or not turn.tool_calls:
            content.append({"type": "text", "text": turn.text})
        for call in turn.tool_calls:
            call_id = call.id or f"toolu_{secrets.token_hex(12)}"
            content.append({"type": "tool_use", "id": call_id, "name": call.name, "input": call.arguments})
        return content

    @staticmethod
    def _stop_reason(turn: Turn) -> str:
        return "tool_use" if turn.tool_calls else STOP_REASONS.get(turn.stop, "end_turn")

    @staticmethod
    def _usage(turn: Turn) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "input_tokens": turn.input_tokens - turn.cached_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": turn.cached_tokens,
            "output_tokens": turn.output_tokens,
            "service_tier": "standard",
        }
        if turn.reasoning_tokens:
            usage["output_tokens_details"] = {"thinking_tokens": turn.reasoning_tokens}
        return usage

    def _message(self, turn: Turn, model: str) -> dict[str, Any]:
        return {
            "id": f"msg_{secrets.token_hex(12)}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._content(turn),
            "stop_reason": self._stop_reason(turn),
            "stop_sequence": None,
            "usage": self._usage(turn),
        }

    def _sse(self, turn: Turn, model: str) -> list[bytes]:
        start = self._message(turn, model)
        usage = start["usage"]
        start.update(content=[], stop_reason=None, usage={**usage, "output_tokens": 1})
        start["usage"].pop("output_tokens_details", None)
        events = [sse("message_start", {"type": "message_start", "message": start}), sse("ping", {"type": "ping"})]
        for index, block in enumerate(self._content(turn)):
            events += self._block_events(index, block, turn.chunk_size)
        events.append(
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self._stop_reason(turn), "stop_sequence": None},
                    "usage": {key: value for key, value in usage.items() if key != "service_tier"},
                },
            )
        )
        events.append(sse("message_stop", {"type": "message_stop"}))
        return events

    @staticmethod
    def _block_events(index: int, block: dict[str, Any], size: int) -> list[bytes]:
        def delta(payload: dict[str, Any]) -> bytes:
            return sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": payload})

        kind = block["type"]
        if kind == "thinking":
            opening: dict[str, Any] = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [delta({"type": "thinking_delta", "thinking": part}) for part in pieces(block["thinking"], size)]
            deltas.append(delta({"type": "signature_delta", "signature": block["signature"]}))
        elif kind == "text":
            opening = {"type": "text", "text": ""}
            deltas = [delta({"type": "text_delta", "text": part}) for part in pieces(block["text"], size)]
        else:
            opening = {**block, "input": {}}
            # Like the real API, the JSON of the input arrives in pieces, starting with an empty one.
            parts = ["", *pieces(json.dumps(block["input"]), size)]
            deltas = [delta({"type": "input_json_delta", "partial_json": part}) for part in parts]
        start = sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        stop = sse("content_block_stop", {"type": "content_block_stop", "index": index})
        return [start, *deltas, stop]
