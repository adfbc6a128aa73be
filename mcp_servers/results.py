"""Plain data the MCP host hands out: tool descriptions, call results, server status.

These cross from the host's event loop to Django code, so they are frozen
pydantic models built from the SDK's types, never the SDK objects themselves.
"""

import base64
import json
from datetime import datetime
from typing import Any, Literal

from mcp import types as mcp_types
from pydantic import BaseModel, ConfigDict, Field

# "per-user": a server with one connection per user, which has no one state for the whole process.
# "needs-setup": shown to a user who has not set the server's required user_vars (never the host's own state).
# "needs-sign-in": an OAuth server the user has not connected their account to, or must connect again.
Status = Literal["connecting", "connected", "error", "disabled", "per-user", "needs-setup", "needs-sign-in"]


class ToolInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    server: str
    name: str  # the server's own name for it
    namespaced_name: str  # what models see: <server>__<tool>, sanitised
    title: str | None = None
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=dict)
    output_schema: dict[str, Any] | None = None
    annotations: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_mcp(cls, server: str, namespaced_name: str, tool: mcp_types.Tool) -> "ToolInfo":
        annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else {}
        return cls(
            server=server,
            name=tool.name,
            namespaced_name=namespaced_name,
            title=tool.title or (tool.annotations.title if tool.annotations else None),
            description=tool.description or "",
            input_schema=dict(tool.input_schema or {}),
            output_schema=dict(tool.output_schema) if tool.output_schema else None,
            annotations=annotations,
        )


class ToolResult(BaseModel):
    """The outcome of one tool call, as the model and the API see it."""

    model_config = ConfigDict(frozen=True)

    server: str
    tool: str
    content: list[dict[str, Any]] = Field(default_factory=list)
    structured_content: dict[str, Any] | None = None
    is_error: bool = False
    duration_ms: int = 0

    @property
    def text(self) -> str:
        """Everything the model should read, as text: text blocks, resource texts, or the structured content."""
        parts = [_block_text(block) for block in self.content]
        text = "\n".join(part for part in parts if part)
        if not text and self.structured_content is not None:
            text = json.dumps(self.structured_content, ensure_ascii=False)
        return text

    @classmethod
    def error(cls, server: str, tool: str, message: str, duration_ms: int = 0) -> "ToolResult":
        return cls(
            server=server,
            tool=tool,
            content=[{"type": "text", "text": message}],
            is_error=True,
            duration_ms=duration_ms,
        )

    @classmethod
    def from_mcp(cls, server: str, tool: str, result: mcp_types.CallToolResult, duration_ms: int) -> "ToolResult":
        return cls(
            server=server,
            tool=tool,
            content=[content_block(block) for block in result.content],
            structured_content=result.structured_content,
            is_error=bool(result.is_error),
            duration_ms=duration_ms,
        )


def content_block(block: Any) -> dict[str, Any]:
    """An MCP content block as JSON-safe data (binary stays base64, as on the wire)."""
    data = block.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("_meta", None)
    return data


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "")
    if kind == "resource":
        resource = block.get("resource", {})
        if "text" in resource:
            return resource["text"]
        return f"[embedded resource {resource.get('uri', '')} ({resource.get('mimeType', 'binary')})]"
    if kind == "resource_link":
        return f"[resource link {block.get('uri', '')}: {block.get('name', '')}]"
    if kind in ("image", "audio"):
        size = len(base64.b64decode(block.get("data", ""), validate=False)) if block.get("data") else 0
        return f"[{kind} {block.get('mimeType', '')}, {size} bytes]"
    return ""


class ServerStatus(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: Status
    last_error: str | None = None
    last_error_at: datetime | None = None
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    capabilities: dict[str, Any] = Field(default_factory=dict)
    instructions: str | None = None
    connected_since: datetime | None = None
    tool_count: int = 0
    calls: int = 0
    errors: int = 0
    last_call_ms: int | None = None
