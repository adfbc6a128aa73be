"""An MCP server for the tests, built with the SDK's own MCPServer.

Run it as ``python tests/mcp/server.py stdio`` or ``python tests/mcp/server.py http PORT``.
It has quick, slow and failing tools, a destructive and a read-only one (annotations), a tool that
changes the tool list at run time, structured output, a 60-character tool name, resources and prompts.
At start-up it prints to stderr, as careless servers do: with ``TEST_SERVER_PRINT_TOKEN=1``
the value of its ``API_TOKEN``, with ``TEST_SERVER_STDERR_LINES=N`` N numbered lines.
With ``TEST_SERVER_CLIENT_FEATURES=1`` it also reports progress, logs, notes cancelled calls and asks for roots.
With ``TEST_SERVER_ELICITATION=1`` it has ``book_table``, which asks the user to fill a form (elicitation).
"""

import asyncio
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp import types
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

NAME = os.environ.get("TEST_SERVER_NAME", "platform-test-server")
server = MCPServer(NAME, instructions="A server for the platform's tests.")
LONG_NAME = "a_tool_with_a_deliberately_long_name_to_test_sanitising_xyz"  # 60 characters


class Sum(BaseModel):
    total: int
    operands: list[int]


@server.tool(description="Echo the text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="Pretend to delete a note.", annotations=ToolAnnotations(destructive_hint=True))
def wipe(note: str) -> str:
    return f"wiped {note}"


@server.tool(description="Pretend to read a note.", annotations=ToolAnnotations(read_only_hint=True))
def peek(note: str) -> str:
    return f"read {note}"


@server.tool(description="Add two integers (structured output).")
def add(a: int, b: int) -> Sum:
    return Sum(total=a + b, operands=[a, b])


@server.tool(description="Sleep, then answer.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


_arrivals: dict[str, int] = {}


@server.tool(description="Wait until n calls of the same group are in flight at once (proves concurrency).")
async def rendezvous(group: str, n: int, wait: float = 5.0) -> str:
    _arrivals[group] = _arrivals.get(group, 0) + 1
    deadline = asyncio.get_running_loop().time() + wait
    while _arrivals[group] < n:
        if asyncio.get_running_loop().time() > deadline:
            return "alone"
        await asyncio.sleep(0.01)
    return "met"


@server.tool(description="Always fails.")
def fail(message: str) -> str:
    raise ToolError(message)


@server.tool(description="The process id of this server.")
def pid() -> int:
    return os.getpid()


@server.tool(description="The value of an environment variable in this server's process.")
def env(name: str) -> str:
    return os.environ.get(name, "<unset>")


@server.tool(name=LONG_NAME, description="A tool whose name is long.")
def long_named() -> str:
    return "long"


def extra(x: int = 1) -> int:
    return x * 10


@server.tool(description="Add or remove the 'extra' tool and announce that the tool list changed.")
async def toggle_extra(ctx: Context) -> str:
    names = {tool.name for tool in await server.list_tools()}
    if "extra" in names:
        server.remove_tool("extra")
        state = "removed"
    else:
        server.add_tool(extra, name="extra", description="Appears at run time.")
        state = "added"
    await ctx.notify_tools_changed()  # 2026-07-28 clients listening on subscriptions/listen
    # 2025-era clients get a notification instead; a modern connection has no channel for it.
    with contextlib.suppress(Exception):
        await ctx.session.send_tool_list_changed()
    return state


# --- the host as a client: progress, cancellation, logging, roots -------------------------------------
# Only with TEST_SERVER_CLIENT_FEATURES=1, so the usual server's tools and capabilities stay as they are.

_LEVELS: list[types.LoggingLevel] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
_state: dict[str, Any] = {"level": None, "roots_changed": 0}


async def progress(steps: int, delay: float, ctx: Context) -> str:
    for step in range(1, steps + 1):
        await asyncio.sleep(delay)
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
    return f"{steps} steps done"


async def interruptible(seconds: float, marker: str) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        Path(marker).write_text(f"cancelled in {os.getpid()}")  # noqa: ASYNC240 (a few bytes, on the way out)
        raise
    return f"slept {seconds}"


async def _set_level(_ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    _state["level"] = params.level
    return types.EmptyResult()


async def _roots_changed(_ctx: Any, _params: types.NotificationParams) -> None:
    _state["roots_changed"] += 1


async def log_levels(text: str, ctx: Context) -> str:
    floor = _LEVELS.index(_state["level"]) if _state["level"] else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logging is deprecated in 2026-07-28, and still what clients use
        for level in _LEVELS[floor:]:
            await ctx.log(level, {"text": f"{level}: {text}", "token": os.environ.get("API_TOKEN")}, logger_name="t")
    return f"logged {len(_LEVELS) - floor}"


def client_settings() -> str:
    return json.dumps(_state)


async def roots(ctx: Context) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # roots too
        listing = await ctx.session.list_roots()
    return json.dumps([{"uri": str(root.uri), "name": root.name} for root in listing.roots])


if os.environ.get("TEST_SERVER_CLIENT_FEATURES"):
    server.add_tool(progress, description="Report progress in `steps` steps, `delay` seconds apart, then answer.")
    server.add_tool(interruptible, description="Sleep; if the call is cancelled, write the pid to the file `marker`.")
    server.add_tool(log_levels, description="Log a message at each level from the one the client set (else all).")
    server.add_tool(client_settings, description="The log level the client set, and how often its roots changed.")
    server.add_tool(roots, description="The client's roots (roots/list).")
    # A logging/setLevel handler is what declares the logging capability.
    server._lowlevel_server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, _set_level)
    server._lowlevel_server.add_notification_handler(
        "notifications/roots/list_changed", types.NotificationParams, _roots_changed
    )


# --- elicitation: the tool asks the user to fill a form mid-call ----------------------------------------
# Only with TEST_SERVER_ELICITATION=1, so the usual server's tool list stays as it is.


class Booking(BaseModel):
    name: str = Field(description="Who the table is for.")  # required: no default
    guests: int = Field(default=2, ge=1, le=12)
    budget: float = 30.0
    outdoor: bool = False
    seating: Literal["inside", "terrace", "bar"] = "inside"


def ask_booking() -> Elicit[Booking]:
    # A resolver, not ctx.elicit(): a 2026-07-28 call asks through an input_required result, older ones mid-call.
    return Elicit("Details for the booking", Booking)


def book_table(answer: Annotated[ElicitationResult[Booking], Resolve(ask_booking)]) -> str:
    if isinstance(answer, AcceptedElicitation):
        return json.dumps({"action": "accept", "booking": answer.data.model_dump()}, sort_keys=True)
    return json.dumps({"action": answer.action})


if os.environ.get("TEST_SERVER_ELICITATION"):
    server.add_tool(book_table, description="Ask the user for a booking's details (a form), then book it.")


@server.resource("config://app", description="The app's configuration.", mime_type="application/json")
def app_config() -> str:
    return '{"feature": true}'


@server.resource("greeting://{name}", description="A greeting for someone.")
def greeting(name: str) -> str:
    return f"Hello, {name}!"


@server.prompt(description="Ask for a review of some code.")
def review(code: str, language: str = "python") -> str:
    return f"Please review this {language} code:\n{code}"


if __name__ == "__main__":
    if os.environ.get("TEST_SERVER_PRINT_TOKEN"):
        print(f"starting with API_TOKEN={os.environ.get('API_TOKEN')}", file=sys.stderr, flush=True)
    for number in range(int(os.environ.get("TEST_SERVER_STDERR_LINES", "0"))):
        print(f"noise {number}", file=sys.stderr, flush=True)
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "stdio":
        server.run("stdio")
    elif transport == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
