"""``import_mcp_config FILE [--dry-run]``: create or update MCP servers from a JSON configuration file.

FILE is the seed format (``mcp_servers``) or the Claude Desktop / VS Code one (``mcpServers`` /
``servers``); ``-`` reads standard input. All or nothing: an invalid entry means nothing is written.
Keys of VS Code entries that only a client uses (``envFile``, ``dev``, ...) are reported as ignored.
"""

import io
import json
import sys
from pathlib import Path
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mcp_servers.config_io import ConfigFileError, mcp_config_parse
from mcp_servers.services import mcp_servers_import


class Command(BaseCommand):
    help = "Import MCP servers from a JSON configuration file (Claude Desktop, VS Code or seed format)."
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The JSON file, or '-' for standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")

    def handle(self, *args: object, file: str, dry_run: bool, **options: object) -> None:
        stdin = options.get("stdin")
        text = self._read(file, stdin=stdin if isinstance(stdin, io.TextIOBase) else sys.stdin)
        source = "standard input" if file == "-" else file
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"{source} is not valid JSON: {exc}") from exc
        try:
            servers = mcp_config_parse(data)
            report = mcp_servers_import(servers=servers, dry_run=dry_run)
        except ConfigFileError as exc:
            raise CommandError(f"{source}: nothing was imported.\n{exc}") from exc

        for server in servers:
            if server.renamed:
                self.stdout.write(f"renamed {server.original_name!r} -> {server.name}")
            if server.ignored_keys:
                self.stdout.write(f"ignored in {server.name}: {', '.join(server.ignored_keys)} (client-side settings)")
        for name in report.created:
            self.stdout.write(f"created {name}")
        for name, fields in report.updated:
            self.stdout.write(f"updated {name}: {', '.join(fields)}")
        for name in report.unchanged:
            self.stdout.write(f"unchanged {name}")
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged."
                )
            )

    def _read(self, file: str, *, stdin: io.TextIOBase | TextIO) -> str:
        if file == "-":
            return stdin.read()
        try:
            return Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from exc
