"""Tool schema normalisation: every provider gets a schema it accepts, built from real MCP tool lists."""

import json
from pathlib import Path

import pytest

from providers.registry import adapter_class
from providers.schema import GEMINI_KEYS, tool_schema_for

FIXTURES = Path(__file__).parent / "fixtures" / "mcp_tools"
REFERENCE_TOOLS = [
    (server, tool)
    for server in ("filesystem", "everything", "time")
    for tool in json.loads((FIXTURES / f"{server}.json").read_text())
]

# A pydantic-style schema with everything providers dislike.
HARD_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$defs": {
        "Edit": {
            "type": "object",
            "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
            "required": ["old", "new"],
            "additionalProperties": False,
        },
        "Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}},
    },
    "type": "object",
    "properties": {
        "edits": {"type": "array", "items": {"$ref": "#/$defs/Edit"}},
        "mode": {"const": "fast"},
        "note": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}], "default": None},
        "level": {"type": "integer", "enum": [1, 2, 3], "exclusiveMinimum": 0},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "tree": {"$ref": "#/$defs/Node"},
        "tags": {"type": ["array", "null"]},
    },
    "required": ["edits", "not-a-property"],
    "additionalProperties": False,
}


def _walk(node, found=None):
    found = set() if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    _walk(sub, found)
            else:
                found.add(key)
                _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)
    return found


@pytest.mark.parametrize(
    ("server", "tool"), REFERENCE_TOOLS, ids=lambda value: value if isinstance(value, str) else value["name"]
)
def test_reference_tools_fit_gemini_subset(server, tool):
    schema = tool_schema_for("gemini", tool["inputSchema"])

    assert schema["type"] == "object"
    assert _walk(schema) <= GEMINI_KEYS
    assert set(schema.get("required", [])) <= set(schema["properties"])


def test_hard_schema_for_gemini_is_inlined_and_subset_only():
    schema = tool_schema_for("gemini", HARD_SCHEMA)

    assert _walk(schema) <= GEMINI_KEYS
    assert schema["required"] == ["edits"]
    assert schema["properties"]["edits"]["items"] == {
        "type": "object",
        "properties": {"old": {"type": "string"}, "new": {"type": "string"}},
        "required": ["old", "new"],
    }
    assert schema["properties"]["mode"] == {"type": "string", "enum": ["fast"]}
    assert schema["properties"]["note"] == {"type": "string", "nullable": True}
    assert schema["properties"]["level"]["type"] == "integer"
    assert "one of: 1, 2, 3" in schema["properties"]["level"]["description"]
    assert schema["properties"]["level"]["minimum"] == 0
    assert schema["properties"]["either"]["anyOf"] == [{"type": "string"}, {"type": "integer"}]
    assert schema["properties"]["tags"] == {"type": "array", "nullable": True, "items": {"type": "string"}}


def test_recursive_refs_terminate():
    schema = tool_schema_for("json_schema", HARD_SCHEMA)

    depth, node = 0, schema["properties"]["tree"]
    while "properties" in node and "child" in node["properties"]:
        node, depth = node["properties"]["child"], depth + 1
    assert 1 <= depth <= 10
    assert "$ref" not in json.dumps(schema)


@pytest.mark.parametrize(
    ("kind", "dialect"),
    [
        ("anthropic", "json_schema"),
        ("openai", "json_schema"),
        ("openai_compatible", "json_schema"),
        ("gemini", "gemini"),
        ("ollama", "json_schema"),
    ],
)
def test_each_adapter_declares_its_schema_dialect(kind, dialect):
    assert adapter_class(kind).schema_dialect == dialect


def test_an_unknown_dialect_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown schema dialect 'openai': expected one of json_schema, gemini"):
        tool_schema_for("openai", HARD_SCHEMA)


def test_json_schema_providers_keep_semantics_but_drop_refs():
    schema = tool_schema_for("json_schema", HARD_SCHEMA)

    text = json.dumps(schema)
    assert "$ref" not in text
    assert "$defs" not in text
    assert "$schema" not in text
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["mode"] == {"const": "fast"}
    assert schema["required"] == ["edits"]


@pytest.mark.parametrize("dialect", ["json_schema", "gemini"])
def test_input_is_not_mutated_and_empty_schema_becomes_object(dialect):
    before = json.dumps(HARD_SCHEMA, sort_keys=True)

    tool_schema_for(dialect, HARD_SCHEMA)

    assert json.dumps(HARD_SCHEMA, sort_keys=True) == before
    assert tool_schema_for(dialect, None) == {"type": "object", "properties": {}}
    assert tool_schema_for(dialect, {"type": "string"}) == {"type": "object", "properties": {}}


@pytest.fixture(scope="module")
def servers():
    from .fakes.providers import start_all, stop_all

    running = start_all()
    yield running
    stop_all(running)


@pytest.mark.parametrize("kind", ["anthropic", "openai", "gemini", "ollama"])
async def test_every_reference_tool_is_accepted_on_every_provider_wire(servers, kind):
    from providers.types import Message, ToolSpec

    from .fakes.providers import MODELS, adapter_on

    server = servers[kind]
    server.reset()
    tools = [
        ToolSpec(
            name=f"{server_name}__{tool['name']}",
            description=tool.get("description", ""),
            input_schema=tool["inputSchema"],
        )
        for server_name, tool in REFERENCE_TOOLS
    ]

    completion = await adapter_on(kind, server).complete(messages=[Message.user("hi")], model=MODELS[kind], tools=tools)

    assert completion.message.text == "ok"
    body = server.requests[-1].json
    assert server.validate(body) == []
    assert json.dumps(body).count("filesystem__read_text_file") == 1
