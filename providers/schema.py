"""Tool input schemas made acceptable to each provider.

MCP servers publish full JSON Schema (``$ref``/``$defs`` from pydantic,
``additionalProperties``, ``const``, type unions, formats). Providers accept
less: Gemini a small OpenAPI subset, the others JSON Schema with an object at
the top. Each adapter class declares the dialect its API speaks
(``schema_dialect``) and calls ``tool_schema_for(dialect, schema)`` on every
tool it sends; the result never shares structure with the input.
"""

import copy
from typing import Any, Literal

# "json_schema": JSON Schema with an object at the top (Anthropic, OpenAI and compatible servers, Ollama).
# "gemini": the OpenAPI 3.0 subset of Gemini's Schema object (the Gemini API, Vertex AI).
SchemaDialect = Literal["json_schema", "gemini"]

# Keys Gemini's Schema object knows (the OpenAPI 3.0 subset of its API).
GEMINI_KEYS = {
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
GEMINI_FORMATS = {"string": {"enum", "date-time"}, "number": {"float", "double"}, "integer": {"int32", "int64"}}
SCHEMA_DIALECTS: tuple[SchemaDialect, ...] = ("json_schema", "gemini")
DROPPED_EVERYWHERE = {"$schema", "$id", "$comment"}
MAX_REF_DEPTH = 8


def tool_schema_for(dialect: SchemaDialect, schema: dict[str, Any] | None) -> dict[str, Any]:
    """A copy of ``schema`` that an API speaking ``dialect`` accepts as a tool's parameters."""
    if dialect not in SCHEMA_DIALECTS:
        raise ValueError(f"Unknown schema dialect {dialect!r}: expected one of {', '.join(SCHEMA_DIALECTS)}.")
    source = copy.deepcopy(schema) if isinstance(schema, dict) else {}
    definitions = {**source.get("definitions", {}), **source.get("$defs", {})}
    resolved = _resolve(source, definitions, depth=0)
    result = _to_gemini(resolved) if dialect == "gemini" else _clean_json_schema(resolved)
    return _as_object(result)


def _resolve(node: Any, definitions: dict[str, Any], depth: int) -> Any:
    """Inline local ``$ref``s; a reference nested deeper than MAX_REF_DEPTH (recursion) becomes a bare object."""
    if isinstance(node, list):
        return [_resolve(item, definitions, depth) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = definitions.get(name)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if target is None or depth >= MAX_REF_DEPTH:
            return {"type": "object", **_resolve(siblings, definitions, depth)}
        return {**_resolve(copy.deepcopy(target), definitions, depth + 1), **_resolve(siblings, definitions, depth)}
    return {
        key: _resolve(value, definitions, depth) for key, value in node.items() if key not in ("$defs", "definitions")
    }


def _clean_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    cleaned = {}
    for key, value in node.items():
        if key in DROPPED_EVERYWHERE:
            continue
        # "properties" maps names to schemas: recurse into each, never treat names as keywords.
        if key == "properties" and isinstance(value, dict):
            cleaned[key] = {name: _clean_json_schema(sub) for name, sub in value.items()}
        else:
            cleaned[key] = _clean_json_schema(value)
    return cleaned


def _as_object(schema: dict[str, Any]) -> dict[str, Any]:
    """Providers want an object at the top; a top-level union or non-object is wrapped as best we can."""
    if schema.get("type") != "object":
        for key in ("anyOf", "oneOf", "allOf", "enum", "not"):
            schema.pop(key, None)
        schema["type"] = "object"
    schema.setdefault("properties", {})
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name in schema["properties"]]
        if not schema["required"]:
            del schema["required"]
    return schema


def _append_description(node: dict[str, Any], note: str) -> None:
    node["description"] = f"{node['description']} ({note})" if node.get("description") else note


def _to_gemini(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    # Unions: oneOf behaves like anyOf for a model; allOf of one schema is that schema.
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf")
    if "allOf" in node:
        parts = node.pop("allOf")
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict):
                for key, value in part.items():
                    if key == "properties" and isinstance(value, dict):
                        node["properties"] = {**node.get("properties", {}), **value}
                    elif key == "required" and isinstance(value, list):
                        node["required"] = [*node.get("required", []), *value]
                    else:
                        node.setdefault(key, value)
    if "const" in node:
        node["enum"] = [node.pop("const")]

    result: dict[str, Any] = {}
    node_type = node.get("type")
    if isinstance(node_type, list):
        non_null = [t for t in node_type if t != "null"]
        if "null" in node_type:
            result["nullable"] = True
        if len(non_null) == 1:
            node_type = non_null[0]
        else:
            node_type = None
            node["anyOf"] = [{"type": t} for t in non_null]

    if "anyOf" in node and isinstance(node["anyOf"], list):
        options = [option for option in node["anyOf"] if isinstance(option, dict)]
        if any(option.get("type") == "null" for option in options):
            result["nullable"] = True
            options = [option for option in options if option.get("type") != "null"]
        if len(options) == 1 and not node_type:
            merged = _to_gemini(options[0])
            merged.update(result)
            for key in ("description", "title", "default"):
                if node.get(key) is not None and key not in merged:
                    merged[key] = node[key]
            return merged
        if options:
            result["anyOf"] = [_to_gemini(option) for option in options]

    if node_type:
        result["type"] = node_type
    elif "properties" in node:
        result["type"] = "object"

    notes: list[str] = []
    for key, value in node.items():
        if key in ("type", "anyOf", "nullable") or key not in GEMINI_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            result["properties"] = {name: _to_gemini(sub) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            result["items"] = _to_gemini(value)
        elif key == "default" and value is None:
            continue
        elif key == "format":
            if value in GEMINI_FORMATS.get(str(node_type), set()):
                result["format"] = value
        elif key == "enum":
            if (
                isinstance(value, list)
                and all(isinstance(item, str) for item in value)
                and node_type in ("string", None)
            ):
                result["enum"] = value
                result["type"] = "string"
            elif isinstance(value, list):
                notes.append(f"one of: {', '.join(map(str, value))}")
        else:
            result[key] = value
    if "exclusiveMinimum" in node and isinstance(node["exclusiveMinimum"], int | float):
        result.setdefault("minimum", node["exclusiveMinimum"])
    if "exclusiveMaximum" in node and isinstance(node["exclusiveMaximum"], int | float):
        result.setdefault("maximum", node["exclusiveMaximum"])
    for note in notes:
        _append_description(result, note)
    if result.get("type") == "array" and "items" not in result:
        result["items"] = {"type": "string"}
    if "required" in result and isinstance(result.get("properties"), dict):
        result["required"] = [name for name in result["required"] if name in result["properties"]]
    return result
