"""A local server speaking the Gemini API (``/v1``) wire protocol, for tests.

Serves ``generateContent`` (JSON), ``streamGenerateContent`` (SSE with
``alt=sse``, a JSON array without), ``countTokens`` and the models list; renders
scripted ``Turn`` / ``Fail`` replies in Gemini's own format; and validates every
generate request the way the real API does, answering an invalid one with 400
INVALID_ARGUMENT without consuming a scripted reply. A count is
``count_tokens_of(body)``: the words of the prompt.
"""

import base64
import binascii
import re
from typing import Any

from .wire import Fail, JsonReply, Recorded, Reply, StreamReply, Turn, WireServer, pieces, sse

API_VERSION = "v1"

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

FINISH_REASONS = {"end": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS", "refused": "SAFETY"}

DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "name": "models/gemini-2.5-flash",
        "displayName": "Gemini 2.5 Flash",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent"],
        "thinking": True,
    },
    {
        "name": "models/gemini-2.5-pro",
        "displayName": "Gemini 2.5 Pro",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "thinking": True,
    },
    {
        "name": "models/text-embedding-004",
        "displayName": "Text Embedding 004",
        "inputTokenLimit": 2048,
        "outputTokenLimit": 1,
        "supportedGenerationMethods": ["embedContent"],
    },
]

# Proto JSON accepts both lowerCamelCase and the original snake_case field names; the SDK sends some of each.
_PART_DATA = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
}
_PART_META = {"thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
_REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
    "serviceTier",
    "continuationToken",
}
_GENERATION_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "imageConfig",
    "mediaResolution",
}
_COUNT_FIELDS = {"contents", "generateContentRequest"}
# Keys whose values are structure or opaque data, not prompt text: they add no words to a count.
_UNCOUNTED_KEYS = {"role", "type", "thoughtSignature", "thought_signature"}
_THINKING_FIELDS = {"thinkingBudget", "includeThoughts", "thinkingLevel"}
_SCHEMA_FIELDS = {
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "properties",
    "required",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "anyOf",
    "propertyOrdering",
    "title",
    "minLength",
    "maxLength",
    "pattern",
    "default",
    "example",
    "minProperties",
    "maxProperties",
}
_SCHEMA_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")
_SNAKE = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


def fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A message's fields under their lowerCamelCase names, as the API's JSON parser reads them."""
    return {camel(key): value for key, value in obj.items()}


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_words(item) for key, item in value.items() if key not in _UNCOUNTED_KEYS)
    return 0


def count_tokens_of(body: dict[str, Any]) -> int:
    """This fake's count of a countTokens request: the whitespace-separated words of every string in what it counts,
    except role, type and thought-signature values. With a ``generateContentRequest`` that is its contents, system
    instruction and tools (the top-level ``contents`` are then ignored, as the API documents); else ``contents``.
    """
    request = fields(body)
    if "generateContentRequest" in request:
        full = fields(request["generateContentRequest"])
        return sum(_words(full.get(name)) for name in ("contents", "systemInstruction", "tools"))
    return _words(request.get("contents"))


def thought_signature(seed: str) -> str:
    """The (deterministic) base64 thought signature this fake attaches to a part; tests compute it too."""
    return base64.b64encode(f"sig:{seed}".encode()).decode("ascii")


class GeminiWire(WireServer):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[dict[str, Any]] = [dict(model) for model in DEFAULT_MODELS]
        # The real API caps pageSize (at 1000); tests lower it to make the SDK follow nextPageToken.
        self.page_size_cap = 1000
        prefix = f"/{API_VERSION}/models"
        self.add_route("POST", rf"{prefix}/(?P<model>[^/:]+):generateContent", self._generate)
        self.add_route("POST", rf"{prefix}/(?P<model>[^/:]+):streamGenerateContent", self._stream_generate)
        self.add_route("POST", rf"{prefix}/(?P<model>[^/:]+):countTokens", self._count_tokens)
        self.add_route("GET", prefix, self._list_models)

    def reset(self) -> None:
        super().reset()
        self.models = [dict(model) for model in DEFAULT_MODELS]
        self.page_size_cap = 1000

    # --- routes ------------------------------------------------------------------------

    def _generate(self, request: Recorded, match: re.Match[str]) -> Reply:
        rejected = self._reject(request)
        if rejected:
            return rejected
        reply = self.next_reply()
        if isinstance(reply, Fail):
            return error_reply(reply.status, reply.message, reply.retry_after)
        return JsonReply(200, render_response(reply, match["model"]))

    def _stream_generate(self, request: Recorded, match: re.Match[str]) -> Reply:
        rejected = self._reject(request)
        if rejected:
            return rejected
        reply = self.next_reply()
        if isinstance(reply, Fail):
            return error_reply(reply.status, reply.message, reply.retry_after)
        chunks = render_stream(reply, match["model"])
        if request.query.get("alt") != ["sse"]:
            # Without alt=sse the API streams one JSON array.
            return JsonReply(200, chunks)
        return StreamReply(200, "text/event-stream", [sse(None, chunk) for chunk in chunks])

    def _count_tokens(self, request: Recorded, match: re.Match[str]) -> Reply:
        if not request.headers.get("x-goog-api-key"):
            return error_reply(403, "Method doesn't allow unregistered callers.")
        try:
            body = request.json
        except ValueError as exc:
            return error_reply(400, f"Invalid JSON payload received. {exc}")
        problems = self.validate_count(body, match["model"])
        if problems:
            return error_reply(400, "\n".join(f"* {problem}" for problem in problems))
        if fail := self._pop_fail():
            return error_reply(fail.status, fail.message, fail.retry_after)
        total = count_tokens_of(body)
        details = [{"modality": "TEXT", "tokenCount": total}]
        return JsonReply(200, {"totalTokens": total, "promptTokensDetails": details})

    def _list_models(self, request: Recorded, match: re.Match[str]) -> Reply:
        if not request.headers.get("x-goog-api-key"):
            return error_reply(403, "Method doesn't allow unregistered callers.")
        # A scripted failure applies to this endpoint too (health checks); a scripted Turn is left for chat.
        if head := self._pop_fail():
            return error_reply(head.status, head.message, head.retry_after)
        size = min(int((request.query.get("pageSize") or ["50"])[0]), self.page_size_cap)
        start = int((request.query.get("pageToken") or ["0"])[0])
        body: dict[str, Any] = {"models": self.models[start : start + size]}
        if start + size < len(self.models):
            body["nextPageToken"] = str(start + size)
        return JsonReply(200, body)

    def _pop_fail(self) -> Fail | None:
        with self._lock:
            if self.script and isinstance(self.script[0], Fail):
                fail = self.script.popleft()
                assert isinstance(fail, Fail)
                return fail
        return None

    def _reject(self, request: Recorded) -> Reply | None:
        if not request.headers.get("x-goog-api-key"):
            return error_reply(403, "Method doesn't allow unregistered callers.")
        try:
            body = request.json
        except ValueError as exc:
            return error_reply(400, f"Invalid JSON payload received. {exc}")
        problems = self.validate(body)
        if problems:
            return error_reply(400, "\n".join(f"* {problem}" for problem in problems))
        return None

    # --- validation --------------------------------------------------------------------

    def validate(self, body: Any) -> list[str]:
        """What the real API would reject in a generateContent request body; empty when it is valid."""
        if not isinstance(body, dict):
            return ["GenerateContentRequest: the request body must be a JSON object."]
        problems: list[str] = []
        request = fields(body)
        problems += [
            f'Invalid JSON payload received. Unknown name "{key}".' for key in request if key not in _REQUEST_FIELDS
        ]
        contents = request.get("contents")
        if not isinstance(contents, list) or not contents:
            problems.append("GenerateContentRequest.contents: contents is not specified")
            contents = []
        for index, content in enumerate(contents):
            problems += _content_problems(content, f"GenerateContentRequest.contents[{index}]")
        problems += _turn_problems(contents)
        if "systemInstruction" in request:
            problems += _system_problems(request["systemInstruction"])
        if "tools" in request:
            problems += _tools_problems(request["tools"])
        if "generationConfig" in request:
            problems += _generation_problems(request["generationConfig"])
        if "toolConfig" in request:
            problems += _tool_config_problems(request["toolConfig"], request.get("tools"))
        return problems

    def validate_count(self, body: Any, model: str) -> list[str]:
        """What the real API would reject in a countTokens request body; empty when it is valid."""
        if not isinstance(body, dict):
            return ["CountTokensRequest: the request body must be a JSON object."]
        request = fields(body)
        problems = [
            f'Invalid JSON payload received. Unknown name "{key}".' for key in request if key not in _COUNT_FIELDS
        ]
        if "generateContentRequest" not in request:
            return problems + self.validate({"contents": request.get("contents")})
        full = request["generateContentRequest"]
        if not isinstance(full, dict):
            return [*problems, "CountTokensRequest.generate_content_request: must be an object."]
        full = fields(full)
        named = full.pop("model", None)
        if not named:
            problems.append("CountTokensRequest.generate_content_request.model: model is not specified")
        elif named != f"models/{model}":
            problems.append(f"CountTokensRequest.generate_content_request.model: {named!r} is not models/{model}")
        return problems + self.validate(full)


# --- rendering ---------------------------------------------------------------------------


def error_reply(status: int, message: str, retry_after: float | None = None) -> JsonReply:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
    return JsonReply(status, {"error": error}, headers)


def usage_metadata(turn: Turn) -> dict[str, Any]:
    # Turn counts are canonical (output includes reasoning); the wire counts thoughts apart from candidates.
    candidates = turn.output_tokens - turn.reasoning_tokens
    usage: dict[str, Any] = {
        "promptTokenCount": turn.input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": turn.input_tokens + turn.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": turn.input_tokens}],
    }
    if turn.cached_tokens:
        usage["cachedContentTokenCount"] = turn.cached_tokens
    if turn.reasoning_tokens:
        usage["thoughtsTokenCount"] = turn.reasoning_tokens
    return usage


def finish_reason(turn: Turn) -> str:
    # Anything not canonical is taken as a raw Gemini reason (e.g. "MALFORMED_FUNCTION_CALL").
    return FINISH_REASONS.get(turn.stop, turn.stop)


def _call_parts(turn: Turn) -> list[dict[str, Any]]:
    parts = []
    for index, call in enumerate(turn.tool_calls):
        function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
        if call.id is not None:
            function_call["id"] = call.id
        part: dict[str, Any] = {"functionCall": function_call}
        if index == 0 and turn.thinking:
            # Thinking models sign the first function call of a step.
            part["thoughtSignature"] = thought_signature(call.name)
        parts.append(part)
    return parts


def _candidate(parts: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if parts:
        candidate["content"] = {"role": "model", "parts": parts}
    if reason:
        candidate["finishReason"] = reason
    return candidate


def _response(candidate: dict[str, Any], usage: dict[str, Any], model: str) -> dict[str, Any]:
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "resp-fake-1"}


def render_response(turn: Turn, model: str) -> dict[str, Any]:
    """The whole reply as one GenerateContentResponse."""
    parts: list[dict[str, Any]] = []
    if turn.thinking:
        parts.append({"text": turn.thinking, "thought": True, "thoughtSignature": thought_signature(turn.thinking)})
    if turn.text:
        parts.append({"text": turn.text})
    parts += _call_parts(turn)
    return _response(_candidate(parts, finish_reason(turn)), usage_metadata(turn), model)


def render_stream(turn: Turn, model: str) -> list[dict[str, Any]]:
    """The reply as streamed chunks: thought pieces, text pieces, all function calls at once, then the finish."""
    part_chunks: list[list[dict[str, Any]]] = []
    thoughts = pieces(turn.thinking, turn.chunk_size)
    for index, piece in enumerate(thoughts):
        part: dict[str, Any] = {"text": piece, "thought": True}
        if index == len(thoughts) - 1:
            part["thoughtSignature"] = thought_signature(turn.thinking)
        part_chunks.append([part])
    part_chunks += [[{"text": piece}] for piece in pieces(turn.text, turn.chunk_size)]
    if turn.tool_calls:
        part_chunks.append(_call_parts(turn))
    if not part_chunks:
        part_chunks.append([])
    # Every chunk carries the usage so far; the prompt is known from the start.
    running = {"promptTokenCount": turn.input_tokens, "totalTokenCount": turn.input_tokens}
    last = len(part_chunks) - 1
    return [
        _response(
            _candidate(parts, finish_reason(turn) if index == last else None),
            usage_metadata(turn) if index == last else running,
            model,
        )
        for index, parts in enumerate(part_chunks)
    ]


# --- validation rules --------------------------------------------------------------------


def _content_problems(content: Any, where: str) -> list[str]:
    if not isinstance(content, dict):
        return [f"{where}: must be an object."]
    problems: list[str] = []
    content = fields(content)
    problems += [f'{where}: Unknown name "{key}".' for key in content if key not in {"role", "parts"}]
    role = content.get("role")
    if role not in ("user", "model"):
        problems.append(f"{where}.role: Please use a valid role: user, model (got {role!r}).")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        problems.append(f"{where}.parts: contents.parts must not be empty.")
        return problems
    for index, part in enumerate(parts):
        problems += _part_problems(part, role, f"{where}.parts[{index}]")
    return problems


def _part_problems(part: Any, role: Any, where: str) -> list[str]:
    if not isinstance(part, dict):
        return [f"{where}: must be an object."]
    part = fields(part)
    problems = [f'{where}: Unknown name "{key}".' for key in part if key not in _PART_DATA | _PART_META]
    data = [key for key in part if key in _PART_DATA]
    if len(data) != 1:
        problems.append(f"{where}: a part must have exactly one data field (found {data or 'none'}).")
    if "thought" in part and not isinstance(part["thought"], bool):
        problems.append(f"{where}.thought: Invalid value (TYPE_BOOL).")
    signature = part.get("thoughtSignature")
    if signature is not None:
        try:
            if not isinstance(signature, str):
                raise ValueError(signature)
            base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}.thoughtSignature: Invalid value (TYPE_BYTES), Base64 decoding failed.")
    if "text" in part:
        if not isinstance(part["text"], str):
            problems.append(f"{where}.text: Invalid value (TYPE_STRING).")
        elif not part["text"] and signature is None:
            problems.append(f"{where}.text: Unable to submit request because it has an empty text parameter.")
    if "inlineData" in part:
        problems += _blob_problems(part["inlineData"], f"{where}.inline_data")
    if "fileData" in part:
        file_data = fields(part["fileData"]) if isinstance(part["fileData"], dict) else {}
        if not isinstance(file_data.get("fileUri"), str) or not file_data["fileUri"]:
            problems.append(f"{where}.file_data.file_uri: Required.")
        if not isinstance(file_data.get("mimeType"), str):
            problems.append(f"{where}.file_data.mime_type: Required.")
    if "functionCall" in part:
        if role != "model":
            problems.append(f"{where}.functionCall: function calls may only appear in a model turn.")
        problems += _function_call_problems(part["functionCall"], f"{where}.functionCall")
    if "functionResponse" in part:
        if role != "user":
            problems.append(f"{where}.functionResponse: function responses may only appear in a user turn.")
        problems += _function_response_problems(part["functionResponse"], f"{where}.functionResponse")
    return problems


def _blob_problems(blob: Any, where: str) -> list[str]:
    blob = fields(blob) if isinstance(blob, dict) else {}
    problems = []
    if not isinstance(blob.get("mimeType"), str) or not blob["mimeType"]:
        problems.append(f"{where}.mime_type: Required.")
    try:
        base64.b64decode(blob.get("data") or "", validate=True)
        if not blob.get("data"):
            raise ValueError
    except (binascii.Error, ValueError):
        problems.append(f"{where}.data: Invalid value (TYPE_BYTES), Base64 decoding failed.")
    return problems


def _tool_config_problems(config: Any, tools: Any) -> list[str]:
    where = "GenerateContentRequest.tool_config.function_calling_config"
    calling = fields(config).get("functionCallingConfig") if isinstance(config, dict) else None
    if not isinstance(calling, dict):
        return [f"{where}: must be an object."]
    calling = fields(calling)
    mode = calling.get("mode")
    if mode not in ("AUTO", "ANY", "NONE", "VALIDATED"):
        return [f"{where}.mode: Invalid value {mode!r} (TYPE_ENUM)."]
    allowed = calling.get("allowedFunctionNames")
    if allowed is None:
        return []
    if mode not in ("ANY", "VALIDATED"):
        return [f"{where}.allowed_function_names: only allowed with mode ANY or VALIDATED."]
    declared = {
        fields(declaration).get("name")
        for tool in (tools if isinstance(tools, list) else [])
        for declaration in fields(tool).get("functionDeclarations", [])
    }
    return [f"{where}.allowed_function_names: {name!r} is not declared." for name in allowed if name not in declared]


def _function_call_problems(call: Any, where: str) -> list[str]:
    if not isinstance(call, dict):
        return [f"{where}: must be an object."]
    call = fields(call)
    problems = [f'{where}: Unknown name "{key}".' for key in call if key not in {"id", "name", "args"}]
    if not isinstance(call.get("name"), str) or not call["name"]:
        problems.append(f"{where}.name: Name cannot be empty.")
    if "args" in call and not isinstance(call["args"], dict):
        problems.append(f"{where}.args: Proto field is not repeating, cannot start list / must be an object.")
    return problems


def _function_response_problems(response: Any, where: str) -> list[str]:
    if not isinstance(response, dict):
        return [f"{where}: must be an object."]
    response = fields(response)
    allowed = {"id", "name", "response", "willContinue", "scheduling", "parts"}
    problems = [f'{where}: Unknown name "{key}".' for key in response if key not in allowed]
    if not isinstance(response.get("name"), str) or not response["name"]:
        problems.append(f"{where}.name: Name cannot be empty.")
    if not isinstance(response.get("response"), dict):
        problems.append(f"{where}.response: must be an object (google.protobuf.Struct).")
    return problems


def _part_fields(content: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(content, dict):
        return []
    parts = fields(content).get("parts")
    found = []
    for part in parts if isinstance(parts, list) else []:
        value = fields(part).get(key) if isinstance(part, dict) else None
        if isinstance(value, dict):
            found.append(fields(value))
    return found


def _turn_problems(contents: list[Any]) -> list[str]:
    """Ordering rules: who speaks first, and every function call answered by the very next turn."""
    problems: list[str] = []
    if contents and isinstance(contents[0], dict) and fields(contents[0]).get("role") != "user":
        problems.append("GenerateContentRequest.contents[0]: the first content must have role 'user'.")
    for index, content in enumerate(contents):
        calls = _part_fields(content, "functionCall")
        responses = _part_fields(content, "functionResponse")
        if responses:
            previous = _part_fields(contents[index - 1], "functionCall") if index > 0 else []
            if not previous:
                problems.append(
                    f"GenerateContentRequest.contents[{index}]: a function response turn must come immediately "
                    "after a model turn with function calls."
                )
        if not calls:
            continue
        before = (
            fields(contents[index - 1]).get("role") if index > 0 and isinstance(contents[index - 1], dict) else None
        )
        if before != "user":
            problems.append(
                f"GenerateContentRequest.contents[{index}]: Please ensure that function call turn comes immediately "
                "after a user turn or after a function response turn."
            )
        following = _part_fields(contents[index + 1], "functionResponse") if index + 1 < len(contents) else []
        call_names = sorted(str(call.get("name")) for call in calls)
        response_names = sorted(str(response.get("name")) for response in following)
        if len(following) != len(calls):
            problems.append(
                f"Please ensure that the number of function response parts is equal to the number of function call "
                f"parts of the function call turn (contents[{index}] has {len(calls)} function call(s), "
                f"contents[{index + 1}] has {len(following)} function response(s))."
            )
        elif call_names != response_names:
            problems.append(
                f"GenerateContentRequest.contents[{index + 1}]: function response names {response_names} do not "
                f"match the function call names {call_names} of contents[{index}]."
            )
        call_ids = {call["id"] for call in calls if call.get("id")}
        for response in following:
            if response.get("id") and call_ids and response["id"] not in call_ids:
                problems.append(
                    f"GenerateContentRequest.contents[{index + 1}]: function response id {response['id']!r} matches "
                    f"no function call of contents[{index}]."
                )
    return problems


def _system_problems(system: Any) -> list[str]:
    where = "GenerateContentRequest.system_instruction"
    if not isinstance(system, dict):
        return [f"{where}: must be an object."]
    system = fields(system)
    parts = system.get("parts")
    if not isinstance(parts, list) or not parts:
        return [f"{where}.parts: must not be empty."]
    problems = []
    if system.get("role") not in (None, "user", "system"):
        problems.append(f"{where}.role: invalid role {system.get('role')!r}.")
    for index, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(fields(part).get("text"), str):
            problems.append(f"{where}.parts[{index}]: the system instruction may only hold text.")
    return problems


def _tools_problems(tools: Any) -> list[str]:
    where = "GenerateContentRequest.tools"
    if not isinstance(tools, list):
        return [f"{where}: must be a list."]
    problems: list[str] = []
    seen: set[str] = set()
    for tool_index, tool in enumerate(tools):
        tool_where = f"{where}[{tool_index}]"
        if not isinstance(tool, dict):
            problems.append(f"{tool_where}: must be an object.")
            continue
        tool = fields(tool)
        allowed = {"functionDeclarations", "googleSearch", "codeExecution", "urlContext", "googleSearchRetrieval"}
        problems += [f'{tool_where}: Unknown name "{key}".' for key in tool if key not in allowed]
        declarations = tool.get("functionDeclarations", [])
        if not isinstance(declarations, list):
            problems.append(f"{tool_where}.function_declarations: must be a list.")
            continue
        for index, declaration in enumerate(declarations):
            decl_where = f"{tool_where}.function_declarations[{index}]"
            if not isinstance(declaration, dict):
                problems.append(f"{decl_where}: must be an object.")
                continue
            declaration = fields(declaration)
            allowed_decl = {"name", "description", "parameters", "parametersJsonSchema", "response", "behavior"}
            problems += [f'{decl_where}: Unknown name "{key}".' for key in declaration if key not in allowed_decl]
            name = declaration.get("name")
            if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
                problems.append(
                    f"{decl_where}.name: Invalid function name {name!r}. Must start with a letter or an underscore, "
                    "contain only a-z, A-Z, 0-9, underscores, dots or dashes, at most 64 characters."
                )
            elif name in seen:
                problems.append(f"{decl_where}.name: Duplicate function declaration name {name!r}.")
            else:
                seen.add(name)
            if "parameters" in declaration:
                problems += _schema_problems(declaration["parameters"], f"{decl_where}.parameters")
    return problems


def _schema_problems(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: must be an object."]
    problems: list[str] = []
    for key in schema:
        if camel(key) not in _SCHEMA_FIELDS:
            problems.append(f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': Cannot find field.")
    schema = fields(schema)
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.upper() not in _SCHEMA_TYPES):
        problems.append(f"{where}.type: Invalid value {kind!r} (TYPE_ENUM).")
    kind = kind.upper() if isinstance(kind, str) else None
    properties = schema.get("properties")
    if properties is not None:
        if not isinstance(properties, dict):
            problems.append(f"{where}.properties: must be an object.")
            properties = {}
        for name, sub in properties.items():
            problems += _schema_problems(sub, f"{where}.properties[{name}]")
    if kind == "OBJECT" and not properties:
        problems.append(f"{where}.properties: should be non-empty for OBJECT type")
    if kind == "ARRAY" and "items" not in schema:
        problems.append(f"{where}.items: missing field.")
    if "items" in schema:
        problems += _schema_problems(schema["items"], f"{where}.items")
    for index, sub in enumerate(schema.get("anyOf") or []):
        problems += _schema_problems(sub, f"{where}.any_of[{index}]")
    required = schema.get("required")
    if required is not None:
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            problems.append(f"{where}.required: must be a list of strings.")
        else:
            for index, name in enumerate(required):
                if name not in (properties or {}):
                    problems.append(f"{where}.required[{index}]: property is not defined")
    enum = schema.get("enum")
    if enum is not None and (not isinstance(enum, list) or not all(isinstance(value, str) for value in enum)):
        problems.append(f"{where}.enum: enum values must be strings.")
    return problems


def _generation_problems(config: Any) -> list[str]:
    where = "GenerateContentRequest.generation_config"
    if not isinstance(config, dict):
        return [f"{where}: must be an object."]
    problems: list[str] = []
    config = fields(config)
    problems += [f'{where}: Unknown name "{key}".' for key in config if key not in _GENERATION_FIELDS]
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        problems.append(f"{where}.max_output_tokens: must be a positive integer.")
    temperature = config.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        problems.append(f"{where}.temperature: must be between 0 and 2.")
    stops = config.get("stopSequences")
    if stops is not None and (
        not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(s, str) for s in stops)
    ):
        problems.append(f"{where}.stop_sequences: at most 5 strings.")
    top_p = config.get("topP")
    if top_p is not None and (not isinstance(top_p, int | float) or not 0 <= top_p <= 1):
        problems.append(f"{where}.top_p: must be between 0 and 1.")
    if "seed" in config and (not isinstance(config["seed"], int) or isinstance(config["seed"], bool)):
        problems.append(f"{where}.seed: Invalid value (TYPE_INT32).")
    mime_type = config.get("responseMimeType")
    if mime_type is not None and mime_type not in ("text/plain", "application/json", "text/x.enum"):
        problems.append(f"{where}.response_mime_type: unsupported mime type {mime_type!r}.")
    if "responseJsonSchema" in config and mime_type != "application/json":
        problems.append(f"{where}.response_json_schema: response_mime_type must be application/json.")
    if "responseJsonSchema" in config and "responseSchema" in config:
        problems.append(f"{where}: response_schema and response_json_schema are mutually exclusive.")
    thinking = config.get("thinkingConfig")
    if thinking is not None:
        if not isinstance(thinking, dict):
            problems.append(f"{where}.thinking_config: must be an object.")
        else:
            thinking = fields(thinking)
            problems += [
                f'{where}.thinking_config: Unknown name "{key}".' for key in thinking if key not in _THINKING_FIELDS
            ]
            budget = thinking.get("thinkingBudget")
            if budget is not None and (not isinstance(budget, int) or budget < -1):
                problems.append(f"{where}.thinking_config.thinking_budget: must be an integer >= -1.")
            include = thinking.get("includeThoughts")
            if include is not None and not isinstance(include, bool):
                problems.append(f"{where}.thinking_config.include_thoughts: must be a boolean.")
    return problems
