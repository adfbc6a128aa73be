"""A local OpenAI Chat Completions server: scripted replies, and the real API's request validation.

Speaks ``POST /v1/chat/completions`` (JSON, or SSE ending in ``data: [DONE]``)
and ``GET /v1/models``. Every chat request is checked against the structural
rules the real API enforces, so a history that OpenAI would refuse is refused
here too, with a 400 in OpenAI's error format and no scripted reply consumed.
"""

import json
import re
import secrets
import time
from typing import Any

from .wire import Fail, JsonReply, Recorded, Reply, StreamReply, Turn, WireServer, pieces, sse

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
IMAGE_URL = re.compile(r"^(https?://\S+|data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+=*)$")
ROLES = {"system", "developer", "user", "assistant", "tool"}
# Keys the API accepts on each message; anything else is "Additional properties are not allowed".
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}
USER_PART_TYPES = {"text", "image_url", "input_audio", "file"}
# Top-level parameters of POST /v1/chat/completions; the API rejects any other.
PARAMETERS = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "n", "parallel_tool_calls", "prediction",
    "presence_penalty", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
}  # fmt: skip
FINISH_REASONS = {"end": "stop", "tool_calls": "tool_calls", "length": "length", "refused": "content_filter"}
ERROR_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


class OpenAIWire(WireServer):
    models = ("gpt-4o", "gpt-4o-mini", "o3-mini")

    def __init__(self) -> None:
        super().__init__()
        # Real OpenAI sends each call's pieces in turn; interleaving them is legal and harder to assemble.
        self.interleave_tool_calls = False
        # Seconds before each streamed chunk (benchmarks: a provider that takes its time per token).
        self.stream_delay = 0.0
        self.add_route("POST", "/v1/chat/completions", self._chat)
        self.add_route("GET", "/v1/models", self._models)

    def reset(self) -> None:
        super().reset()
        self.interleave_tool_calls = False
        self.stream_delay = 0.0

    # --- routes ------------------------------------------------------------------------

    def _chat(self, request: Recorded, _: re.Match[str]) -> Reply:
        if not _has_key(request):
            return error_reply(401, "You didn't provide an API key.")
        try:
            body = request.json
        except ValueError:
            return error_reply(400, "We could not parse the JSON body of your request.")
        problems = self.validate(body)
        if problems:
            return error_reply(400, "; ".join(problems))
        reply = self.next_reply()
        if isinstance(reply, Fail):
            return fail_reply(reply)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamReply(
                200, "text/event-stream", self._chunks(reply, body["model"], include_usage), delay=self.stream_delay
            )
        # A whole reply takes as long as its stream would (stream_delay a piece): turns overlap either way.
        delay = self.stream_delay * len(self._chunks(reply, body["model"], False)) if self.stream_delay else 0.0
        return JsonReply(200, self._completion(reply, body["model"]), delay=delay)

    def _models(self, request: Recorded, _: re.Match[str]) -> Reply:
        if not _has_key(request):
            return error_reply(401, "You didn't provide an API key.")
        # A scripted Fail answers this route too; a scripted Turn is left for the next chat request.
        with self._lock:
            failure = self.script.popleft() if self.script and isinstance(self.script[0], Fail) else None
        if isinstance(failure, Fail):
            return fail_reply(failure)
        data = [{"id": name, "object": "model", "created": 1715367049, "owned_by": "system"} for name in self.models]
        return JsonReply(200, {"object": "list", "data": data})

    # --- validation --------------------------------------------------------------------

    def validate(self, body: Any) -> list[str]:
        """What the real API would refuse in this chat request; empty when it is valid."""
        if not isinstance(body, dict):
            return ["The request body must be a JSON object."]
        problems = [f"Unrecognized request argument supplied: {key}" for key in body if key not in PARAMETERS]
        if not isinstance(body.get("model"), str) or not body["model"]:
            problems.append("you must provide a model parameter")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            problems.append("Invalid type for 'stream': expected a boolean.")
        if body.get("stream_options") is not None and stream is not True:
            problems.append("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
        problems += _validate_options(body)
        problems += _validate_tools(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            problems.append("'messages' must be a non-empty array.")
        else:
            problems += _validate_messages(messages)
        return problems

    # --- rendering ---------------------------------------------------------------------

    def _completion(self, turn: Turn, model: str) -> dict[str, Any]:
        calls = _calls(turn)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.text or None,
            "refusal": None,
            "annotations": [],
        }
        if turn.thinking:
            message["reasoning_content"] = turn.thinking  # vLLM / DeepSeek extension, never sent by OpenAI
        if calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in calls
            ]
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(turn)}],
            "usage": _usage(turn),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def _chunks(self, turn: Turn, model: str, include_usage: bool) -> list[bytes]:
        head = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
        if include_usage:
            head["usage"] = None

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse(None, {**head, "choices": [choice]})

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"reasoning_content": piece}) for piece in pieces(turn.thinking, turn.chunk_size)]
        out += [chunk({"content": piece}) for piece in pieces(turn.text, turn.chunk_size)]
        out += [chunk({"tool_calls": [piece]}) for piece in self._tool_call_pieces(turn)]
        out.append(chunk({}, _finish_reason(turn)))
        if include_usage:
            out.append(sse(None, {**head, "choices": [], "usage": _usage(turn)}))
        out.append(sse(None, "[DONE]"))
        return out

    def _tool_call_pieces(self, turn: Turn) -> list[dict[str, Any]]:
        per_call: list[list[dict[str, Any]]] = []
        for index, (call_id, name, arguments) in enumerate(_calls(turn)):
            first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            rest = [{"index": index, "function": {"arguments": part}} for part in pieces(arguments, turn.chunk_size)]
            per_call.append([first, *rest])
        if not self.interleave_tool_calls:
            return [piece for call in per_call for piece in call]
        interleaved = []
        for step in range(max((len(call) for call in per_call), default=0)):
            interleaved += [call[step] for call in per_call if step < len(call)]
        return interleaved


# --- validation rules ----------------------------------------------------------------------


def _validate_options(body: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"Invalid '{key}': expected an integer >= 1.")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        problems.append("Invalid 'temperature': expected a number between 0 and 2.")
    stop = body.get("stop")
    if not (stop is None or isinstance(stop, str)) and (
        not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
    ):
        problems.append("Invalid 'stop': expected a string or an array of at most 4 strings.")
    top_p = body.get("top_p")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 <= top_p <= 1):
        problems.append("Invalid 'top_p': expected a number between 0 and 1.")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append("Invalid type for 'seed': expected an integer.")
    return problems + _validate_response_format(body.get("response_format"))


def _validate_response_format(response_format: Any) -> list[str]:
    if response_format is None:
        return []
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object", "json_schema"):
        return ["Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'."]
    if kind != "json_schema":
        extra = sorted(set(response_format) - {"type"})
        return [f"Invalid 'response_format': unknown keys {extra}."] if extra else []
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        return ["Missing required parameter: 'response_format.json_schema.name'."]
    if "schema" in spec and not isinstance(spec["schema"], dict):
        return ["Invalid type for 'response_format.json_schema.schema': expected an object."]
    return []


def _validate_tool_choice(choice: Any, names: set[str]) -> list[str]:
    if choice in ("auto", "none", "required"):
        return []
    function = choice.get("function") if isinstance(choice, dict) and choice.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        return ["Invalid value for 'tool_choice': expected 'auto', 'none', 'required' or a named function."]
    if function["name"] not in names:
        return [f"Invalid value for 'tool_choice': function {function['name']!r} is not among the tools."]
    return []


def _validate_tools(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    if tools is None:
        if body.get("tool_choice") is not None:
            return ["Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified."]
        return []
    if not isinstance(tools, list) or not tools:
        return ["Invalid 'tools': expected a non-empty array."]
    problems = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            problems.append(f"Invalid '{where}': expected {{'type': 'function', 'function': {{...}}}}.")
            continue
        function = tool["function"]
        unknown = set(function) - {"name", "description", "parameters", "strict"}
        if unknown:
            problems.append(f"Invalid '{where}.function': unknown keys {sorted(unknown)}.")
        name = function.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problems.append(
                f"Invalid '{where}.function.name': string does not match pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
            )
        if "description" in function and not isinstance(function["description"], str):
            problems.append(f"Invalid '{where}.function.description': expected a string.")
        parameters = function.get("parameters")
        if parameters is not None and (not isinstance(parameters, dict) or parameters.get("type") != "object"):
            problems.append(
                f"Invalid schema for function '{name}': schema must be a JSON Schema of 'type: \"object\"'."
            )
    if body.get("tool_choice") is not None:
        names = {tool["function"].get("name") for tool in tools if isinstance(tool, dict) and tool.get("function")}
        problems += _validate_tool_choice(body["tool_choice"], names)
    return problems


def _validate_messages(messages: list[Any]) -> list[str]:
    problems: list[str] = []
    # ids of the latest assistant tool_calls still waiting for their tool messages
    open_ids: list[str] | None = None
    answered: set[str] = set()
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            problems.append(f"Invalid value for '{where}.role': {role!r}; expected one of {sorted(ROLES)}.")
            continue
        role = message["role"]
        unknown = set(message) - MESSAGE_KEYS[role]
        if unknown:
            problems.append(f"Additional properties are not allowed ({sorted(unknown)} unexpected) - '{where}'.")
        if role == "tool":
            problems += _validate_tool_message(message, where, open_ids, answered)
            continue
        if open_ids is not None:
            missing = [call_id for call_id in open_ids if call_id not in answered]
            if missing:
                problems.append(_unanswered(missing))
        open_ids, answered = None, set()
        if role == "assistant":
            problems += _validate_assistant(message, where)
            calls = message.get("tool_calls")
            if isinstance(calls, list) and calls:
                # An id that is not a string is a problem _validate_assistant reports already.
                ids = (call.get("id") for call in calls if isinstance(call, dict))
                open_ids = [call_id for call_id in ids if isinstance(call_id, str)]
        else:
            problems += _validate_content(
                message.get("content"), where, parts=USER_PART_TYPES if role == "user" else {"text"}
            )
    if open_ids is not None:
        missing = [call_id for call_id in open_ids if call_id not in answered]
        if missing:
            problems.append(_unanswered(missing))
    return problems


def _unanswered(missing: list[str]) -> str:
    return (
        "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
        f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(missing)}"
    )


def _validate_tool_message(
    message: dict[str, Any], where: str, open_ids: list[str] | None, answered: set[str]
) -> list[str]:
    problems = _validate_content(message.get("content"), where, parts={"text"})
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        return [*problems, f"Missing required parameter: '{where}.tool_call_id'."]
    if open_ids is None:
        return [
            *problems,
            f"Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
            f"'tool_calls' ('{where}', tool_call_id {call_id}).",
        ]
    if call_id not in open_ids:
        return [*problems, f"Invalid parameter: '{where}.tool_call_id' {call_id} matches no preceding tool call."]
    if call_id in answered:
        return [*problems, f"Invalid parameter: '{where}.tool_call_id' {call_id} was already answered."]
    answered.add(call_id)
    return problems


def _validate_assistant(message: dict[str, Any], where: str) -> list[str]:
    calls = message.get("tool_calls")
    content = message.get("content")
    if calls is None:
        if content is None and message.get("function_call") is None:
            return [f"Invalid value for '{where}.content': expected a string, got null."]
        return _validate_content(content, where, parts={"text", "refusal"})
    problems = [] if content is None else _validate_content(content, where, parts={"text", "refusal"})
    if not isinstance(calls, list) or not calls:
        return [*problems, f"Invalid '{where}.tool_calls': empty array. Expected an array with minimum length 1."]
    seen: set[str] = set()
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or call.get("type") != "function":
            problems.append(f"Invalid value for '{at}.type': expected 'function'.")
            continue
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            problems.append(f"Missing required parameter: '{at}.id'.")
        elif call_id in seen:
            problems.append(f"Invalid '{at}.id': duplicate tool call id {call_id}.")
        else:
            seen.add(call_id)
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            problems.append(f"Missing required parameter: '{at}.function.name'.")
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            problems.append(
                f"Invalid type for '{at}.function.arguments': expected a string, got {type(arguments).__name__}."
            )
            continue
        try:
            json.loads(arguments)
        except ValueError:
            problems.append(f"Invalid '{at}.function.arguments': not valid JSON.")
    return problems


def _validate_content(content: Any, where: str, *, parts: set[str]) -> list[str]:
    if isinstance(content, str):
        return []
    if not isinstance(content, list):
        return [f"Invalid type for '{where}.content': expected a string or an array of content parts."]
    problems = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in parts:
            problems.append(
                f"Invalid value for '{where}.content[{k}].type': {kind!r}; expected one of {sorted(parts)}."
            )
        elif kind == "text" and not isinstance(part.get("text"), str):
            problems.append(f"Missing required parameter: '{where}.content[{k}].text'.")
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not IMAGE_URL.match(url):
                problems.append(f"Invalid '{where}.content[{k}].image_url.url': expected an http(s) or data: URL.")
    return problems


# --- rendering helpers ---------------------------------------------------------------------


def _calls(turn: Turn) -> list[tuple[str, str, str]]:
    return [
        (spec.id or f"call_{secrets.token_hex(12)}", spec.name, json.dumps(spec.arguments)) for spec in turn.tool_calls
    ]


def _finish_reason(turn: Turn) -> str:
    return "tool_calls" if turn.tool_calls else FINISH_REASONS.get(turn.stop, "stop")


def _usage(turn: Turn) -> dict[str, Any]:
    # A Turn counts like the canonical Usage: input includes cached, output includes reasoning; so does OpenAI.
    return {
        "prompt_tokens": turn.input_tokens,
        "completion_tokens": turn.output_tokens,
        "total_tokens": turn.input_tokens + turn.output_tokens,
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": turn.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _has_key(request: Recorded) -> bool:
    authorization = request.headers.get("authorization", "")
    return authorization.startswith("Bearer ") and bool(authorization.removeprefix("Bearer ").strip())


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> JsonReply:
    kind, code = ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JsonReply(status, body, headers or {})


def fail_reply(fail: Fail) -> JsonReply:
    headers = {}
    if fail.retry_after is not None:
        headers["retry-after"] = f"{fail.retry_after:g}"
        headers["retry-after-ms"] = str(int(fail.retry_after * 1000))
    return error_reply(fail.status, fail.message, headers)
