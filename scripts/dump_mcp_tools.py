"""Refresh tests/fixtures/mcp_tools/*.json: the tool lists the reference MCP servers publish.

Run with the project venv: ``.venv/bin/python scripts/dump_mcp_tools.py`` (needs npx for the Node servers).
"""

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from mcp import Client, StdioServerParameters

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mcp_tools"

SERVERS = {
    "filesystem": ("npx", ["-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "{tmp}"]),
    "everything": ("npx", ["-y", "@modelcontextprotocol/server-everything@2026.8.31"]),
    "time": (str(Path(sys.executable).parent / "mcp-server-time"), []),
}


async def dump(name: str, command: str, args: list[str], tmp: str) -> None:
    params = StdioServerParameters(command=command, args=[a.format(tmp=tmp) for a in args])
    async with Client(params) as client:
        result = await client.list_tools()
    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in result.tools]
    (OUT / f"{name}.json").write_text(json.dumps(tools, indent=2, sort_keys=True) + "\n")
    print(f"{name}: {len(tools)} tools")


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (command, args) in SERVERS.items():
            await dump(name, command, args, tmp)


if __name__ == "__main__":
    asyncio.run(main())
