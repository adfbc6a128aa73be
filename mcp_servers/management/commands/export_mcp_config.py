"""``export_mcp_config [--output FILE] [--include-secrets]``: the MCP servers as a Claude Desktop JSON file.

Env and header values are masked unless --include-secrets is given (a full backup).
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcp_servers.config_io import mcp_config_export
from mcp_servers.models import McpServer


class Command(BaseCommand):
    help = "Print (or write to --output) the MCP servers in the Claude Desktop JSON format."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", default=None, help="Write to this file instead of standard output.")
        parser.add_argument(
            "--include-secrets",
            action="store_true",
            help="Write env and header values as stored instead of masked (********).",
        )

    def handle(self, *args: object, output: str | None, include_secrets: bool, **options: object) -> None:
        servers = list(McpServer.objects.order_by("name").prefetch_related("allowed_users", "allowed_groups"))
        exported = mcp_config_export(servers, include_secrets=include_secrets)
        text = json.dumps(exported, indent=2, sort_keys=True, ensure_ascii=False)
        if output is None:
            self.stdout.write(text)
            return
        try:
            Path(output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc}") from exc
        self.stderr.write(f"Wrote {len(servers)} MCP server(s) to {output}.")
