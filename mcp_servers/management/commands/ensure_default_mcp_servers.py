"""``ensure_default_mcp_servers``: give a fresh install working tools (run by ``make run``)."""

from django.core.management.base import BaseCommand

from mcp_servers.services import mcp_servers_ensure_defaults


class Command(BaseCommand):
    help = "Create the default MCP servers (time; filesystem on workspace/ where npx exists) if absent."

    def handle(self, *args: object, **options: object) -> None:
        created = mcp_servers_ensure_defaults()
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created MCP servers: {', '.join(created)}"))
        else:
            self.stdout.write("Default MCP servers already configured.")
