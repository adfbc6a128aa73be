"""``ensure_default_mcp_servers``: give a fresh install working tools (run by ``make run``)."""

import logging

from django.core.management.base import BaseCommand
from django.db import transaction
from redis.exceptions import RedisError

from mcp_servers.services import mcp_servers_ensure_defaults

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Create the default MCP servers (time; filesystem on workspace/ where npx exists) if absent."

    def handle(self, *args: object, **options: object) -> None:
        created: list[str] = []
        try:
            # One transaction: the "config changed" notice goes out after the rows commit, so
            # failing to send it (Redis away) cannot lose them, and `created` is already known.
            with transaction.atomic():
                created = mcp_servers_ensure_defaults()
        except RedisError as exc:
            # The notice only tells running hosts to reload; hosts that start later read the rows anyway.
            # (Redis unreachable is logged by the broadcast itself; this is any other Redis error.)
            logger.warning("MCP servers created, but the config-changed notice was not sent: %s", exc)
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created MCP servers: {', '.join(created)}"))
        else:
            self.stdout.write("Default MCP servers already configured.")
