"""``export_mcp_config [--output FILE]``: the MCP servers as a Claude Desktop ``mcpServers`` JSON file."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcp_servers.config_io import mcp_config_export
from mcp_servers.models import McpServer


class Command(BaseCommand):
    help = "Print (or write to --output) the MCP servers in the Claude Desktop JSON format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=None, help="Write to this file instead of standard output.")

    def handle(self, *args: object, output: str | None, **options: object) -> None:
        servers = list(McpServer.objects.order_by("name"))
        text = json.dumps(mcp_config_export(servers), indent=2, sort_keys=True, ensure_ascii=False)
        if output is None:
            self.stdout.write(text)
            return
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc}") from exc
        self.stderr.write(f"Wrote {len(servers)} MCP server(s) to {output}.")
