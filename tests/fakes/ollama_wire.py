"""A local Ollama server for tests: ``/api/chat`` (JSON or NDJSON) and ``/api/tags``, validating chat requests.

Scripted ``Turn`` / ``Fail`` replies are rendered the way Ollama renders them: tool calls arrive whole with object
arguments, ``done_reason`` stays ``"stop"`` for tool calls, errors are ``{"error": "..."}``. Invalid requests and
unknown models are answered like the real server (400 / 404) without consuming a scripted reply.
"""

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

from .wire import Fail, JsonReply, Recorded, Reply, StreamReply, ToolCallSpec, Turn, WireServer, ndjson, pieces

ROLES = ("system", "user", "assistant", "tool")
THINK_LEVELS = ("low", "medium", "high")
CREATED_AT = "2026-01-01T00:00:00.000000Z"
DEFAULT_MODELS = ("llama3.2:latest", "qwen3:8b", "gpt-oss:20b")


def _tag(name: str) -> str:
    # Ollama resolves a name without a tag to ":latest".
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class OllamaWire(WireServer):
    def __init__(self, models: Iterable[str] = DEFAULT_MODELS) -> None:
        super().__init__()
        self.models = [_tag(name) for name in models]
        # Seconds before each streamed line, to make a client time out.
        self.stream_delay = 0.0
        self.add_route("POST", r"/api/chat", self._chat)
        self.add_route("GET", r"/api/tags", self._tags)

    def reset(self) -> None:
        super().reset()
        self.stream_delay = 0.0

    # --- routes ------------------------------------------------------------------------

    def _chat(self, recorded: Recorded, match: re.Match[str]) -> Reply:
        try:
            body = json.loads(recorded.body or b"null")
        except ValueError as exc:
            return JsonReply(400, {"error": f"invalid character in request body: {exc}"})
        problems = self.validate(body)
        if problems:
            return JsonReply(400, {"error": "; ".join(problems)})
        model = body["model"]
        if _tag(model) not in self.models:
            return JsonReply(404, {"error": f'model "{model}" not found, try pulling it first'})
        if not body.get("messages"):
            # No messages only loads the model.
            return JsonReply(200, self._final(model, "load", Turn(input_tokens=0, output_tokens=0)))
        reply = self.next_reply()
        if isinstance(reply, Fail):
            return _error(reply)
        think = body.get("think") is not False
        if body.get("stream", True):
            return StreamReply(200, "application/x-ndjson", self._lines(model, reply, think), delay=self.stream_delay)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.thinking and think:
            message["thinking"] = reply.thinking
        if reply.tool_calls:
            message["tool_calls"] = [_wire_call(i, call) for i, call in enumerate(reply.tool_calls)]
        return JsonReply(200, {**self._final(model, _done_reason(reply), reply), "message": message})

    def _tags(self, recorded: Recorded, match: re.Match[str]) -> Reply:
        failure = self._pop_failure()
        if failure is not None:
            return _error(failure)
        return JsonReply(200, {"models": [_model_entry(name) for name in self.models]})

    # --- rendering -----------------------------------------------------------------------

    def _lines(self, model: str, turn: Turn, think: bool) -> list[bytes]:
        def chunk(**message: Any) -> bytes:
            return ndjson(
                {
                    "model": model,
                    "created_at": CREATED_AT,
                    "message": {"role": "assistant", "content": "", **message},
                    "done": False,
                }
            )

        lines = [chunk(thinking=piece) for piece in pieces(turn.thinking, turn.chunk_size)] if think else []
        lines += [chunk(content=piece) for piece in pieces(turn.text, turn.chunk_size)]
        if turn.tool_calls:
            lines.append(chunk(tool_calls=[_wire_call(i, call) for i, call in enumerate(turn.tool_calls)]))
        lines.append(ndjson(self._final(model, _done_reason(turn), turn)))
        return lines

    def _final(self, model: str, done_reason: str, turn: Turn) -> dict[str, Any]:
        # eval_count includes thinking tokens; Ollama reports no cache and no separate reasoning count.
        return {
            "model": model,
            "created_at": CREATED_AT,
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": done_reason,
            "total_duration": 123_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": turn.input_tokens,
            "prompt_eval_duration": 20_000_000,
            "eval_count": turn.output_tokens,
            "eval_duration": 100_000_000,
        }

    def _pop_failure(self) -> Fail | None:
        with self._lock:
            if self.script and isinstance(self.script[0], Fail):
                return self.script.popleft()  # type: ignore[return-value]
        return None

    # --- validation ------------------------------------------------------------------------

    def validate(self, body: Any) -> list[str]:
        """What the real server would refuse in this chat request; empty when it is valid."""
        if not isinstance(body, dict):
            return ["request body must be a JSON object"]
        problems: list[str] = []
        model = body.get("model")
        if not isinstance(model, str) or not model:
            problems.append("model is required")
        if "stream" in body and not isinstance(body["stream"], bool):
            problems.append("stream must be a boolean")
        think = body.get("think")
        if think is not None and not isinstance(think, bool) and think not in THINK_LEVELS:
            problems.append(f"invalid think value: {think!r} (want true, false or one of {', '.join(THINK_LEVELS)})")
        if "options" in body and not isinstance(body["options"], dict):
            problems.append("options must be an object")
        elif isinstance(body.get("options"), dict):
            problems += _option_problems(body["options"])
        problems += _tool_problems(body.get("tools"))
        output_format = body.get("format")
        if output_format not in (None, "", "json") and not (
            isinstance(output_format, dict) and isinstance(output_format.get("type"), str)
        ):
            problems.append(f'invalid format: {output_format!r} (want "json" or a JSON schema object)')
        messages = body.get("messages")
        if messages is None:
            return problems
        if not isinstance(messages, list):
            return [*problems, "messages must be an array"]
        return problems + _message_problems(messages)


def _message_problems(messages: list[Any]) -> list[str]:
    problems: list[str] = []
    # Tool names of the latest assistant turn's calls not yet answered; None when no tool message may come.
    open_calls: list[str] | None = None
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{where} must be an object")
            open_calls = None
            continue
        role = message.get("role")
        if role not in ROLES:
            problems.append(f"{where}.role must be one of {', '.join(ROLES)}, not {role!r}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            problems.append(f"{where}.content must be a string")
        if role in ("system", "user") and not content and not message.get("images"):
            problems.append(f"{where} ({role}) has no content")
        if "thinking" in message and (role != "assistant" or not isinstance(message["thinking"], str)):
            problems.append(f"{where}.thinking must be a string on an assistant message")
        images = message.get("images")
        if images is not None and not (isinstance(images, list) and all(_is_base64(x) for x in images)):
            problems.append(f"{where}.images must be an array of base64 strings")
        calls = message.get("tool_calls")
        if calls is not None and role != "assistant":
            problems.append(f"{where}: only assistant messages carry tool_calls")
        if role == "assistant":
            names = _call_problems(where, calls, problems)
            open_calls = names or None
        elif role == "tool":
            name = message.get("tool_name")
            if open_calls is None:
                problems.append(f"{where}: a tool message must follow an assistant message with tool_calls")
            elif not isinstance(name, str) or not name:
                problems.append(f"{where}.tool_name is required")
            elif name not in open_calls:
                problems.append(f"{where}.tool_name {name!r} matches no unanswered tool call of the assistant turn")
            else:
                open_calls.remove(name)
        else:
            open_calls = None
    return problems


def _is_base64(value: Any) -> bool:
    try:
        return isinstance(value, str) and bool(value) and bool(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return False


def _call_problems(where: str, calls: Any, problems: list[str]) -> list[str]:
    """Checks an assistant message's tool_calls; returns the names of the calls."""
    if calls is None:
        return []
    if not isinstance(calls, list):
        problems.append(f"{where}.tool_calls must be an array")
        return []
    names: list[str] = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            problems.append(f"{at}.function must be an object")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{at}.function.name is required")
        else:
            names.append(name)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            problems.append(
                f"json: cannot unmarshal string into Go struct field ToolCallFunction.{at}.function.arguments"
                " of type api.ToolCallFunctionArguments (arguments must be an object)"
            )
        elif arguments is not None and not isinstance(arguments, dict):
            problems.append(f"{at}.function.arguments must be an object")
    return names


def _tool_problems(tools: Any) -> list[str]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        return ["tools must be an array"]
    problems: list[str] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        at = f"tools[{i}]"
        if not isinstance(tool, dict):
            problems.append(f"{at} must be an object")
            continue
        if tool.get("type") != "function":
            problems.append(f'{at}.type must be "function"')
        function = tool.get("function")
        if not isinstance(function, dict):
            problems.append(f"{at}.function must be an object")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{at}.function.name is required")
        elif name in seen:
            problems.append(f"{at}.function.name {name!r} is declared twice")
        else:
            seen.add(name)
        if "description" in function and not isinstance(function["description"], str):
            problems.append(f"{at}.function.description must be a string")
        parameters = function.get("parameters")
        if not isinstance(parameters, dict) or parameters.get("type") != "object":
            problems.append(f'{at}.function.parameters must be an object schema with type "object"')
        elif "properties" in parameters and not isinstance(parameters["properties"], dict):
            problems.append(f"{at}.function.parameters.properties must be an object")
    return problems


def _option_problems(options: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for key in ("num_predict", "num_ctx", "top_k", "seed"):
        if key in options and (not isinstance(options[key], int) or isinstance(options[key], bool)):
            problems.append(f"option {key!r} must be an integer")
    for key in ("temperature", "top_p"):
        if key in options and (not isinstance(options[key], int | float) or isinstance(options[key], bool)):
            problems.append(f"option {key!r} must be a number")
    stop = options.get("stop")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        problems.append("option 'stop' must be an array of strings")
    return problems


def _wire_call(index: int, call: ToolCallSpec) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "arguments": call.arguments}
    if call.id is None:
        return {"function": function}
    # Newer servers number and name their calls; the 0.6 SDK drops both.
    return {"id": call.id, "function": {"index": index, **function}}


def _done_reason(turn: Turn) -> str:
    # Ollama has no refusal and no tool-call reason: only "length" differs from "stop".
    return "length" if turn.stop == "length" else "stop"


def _error(fail: Fail) -> JsonReply:
    headers = {"Retry-After": f"{fail.retry_after:g}"} if fail.retry_after is not None else {}
    return JsonReply(fail.status, {"error": fail.message}, headers)


def _model_entry(name: str) -> dict[str, Any]:
    family = name.split(":", 1)[0]
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-01-01T00:00:00.000000+00:00",
        "size": 2_019_393_189,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "3.2B",
            "quantization_level": "Q4_K_M",
        },
    }
