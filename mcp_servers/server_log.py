"""A server's log messages (notifications/message), kept per server as McpServerLogEntry rows.

A connection hands each message to its ``ServerLogSink`` on the host loop, which only queues it; one
task at a time writes what is queued in batches through ``run_db``, so a chatty server never waits on
the database, and the host loop never touches it. Each server keeps its newest MCP_SERVER_LOG_KEEP
entries: older ones are deleted every ``PRUNE_EVERY`` entries written, and whenever the queue empties.
Everything stored is redacted of the server's secrets first.
"""

import asyncio
import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from platform_site.db import run_db

from .models import LogLevel, McpServerLogEntry
from .redaction import Redactor

logger = logging.getLogger(__name__)

PRUNE_EVERY = 50
BATCH = 100
MAX_QUEUED = 1000  # beyond this a server floods us: newer messages are dropped (and counted) until it drains
MAX_LOGGER_CHARS = McpServerLogEntry._meta.get_field("logger").max_length or 200
MAX_DEPTH = 20
CLOSE_WAIT = 5.0


def redacted(value: Any, redact: Redactor, depth: int = 0) -> Any:
    """``value`` (JSON) with every string, keys too, redacted; nesting deeper than MAX_DEPTH becomes a string."""
    if depth > MAX_DEPTH:
        return redact(str(value))
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(key)): redacted(item, redact, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item, redact, depth + 1) for item in value]
    return value


@transaction.atomic
def server_log_write(*, server: str, entries: list[McpServerLogEntry], prune: bool) -> None:
    """Store ``entries`` of ``server``; with ``prune``, delete what is beyond its newest MCP_SERVER_LOG_KEEP."""
    McpServerLogEntry.objects.bulk_create(entries)
    if not prune:
        return
    keep = settings.MCP_SERVER_LOG_KEEP
    rows = McpServerLogEntry.objects.filter(server=server)
    # Rows are written in the order they came, so the ids order them as created_at does.
    oldest_kept = list(rows.order_by("-id").values_list("id", flat=True)[keep - 1 : keep])
    if oldest_kept:
        rows.filter(id__lt=oldest_kept[0]).delete()


class ServerLogSink:
    """One server's log messages on their way to the database (lives on the host loop)."""

    def __init__(self, server: str, redact: Redactor) -> None:
        self.server = server
        self.redact = redact
        self._queue: list[McpServerLogEntry] = []
        self._writer: asyncio.Task[None] | None = None
        self._since_prune = 0
        self.dropped = 0

    def add(self, level: str, logger_name: str | None, data: Any) -> None:
        if len(self._queue) >= MAX_QUEUED:
            self.dropped += 1
            return
        self._queue.append(
            McpServerLogEntry(
                server=self.server,
                level=level if level in LogLevel.values else LogLevel.INFO,
                logger=self.redact(logger_name or "")[:MAX_LOGGER_CHARS],
                data=redacted(data, self.redact),
            )
        )
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name=f"mcp-log:{self.server}")

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            self._since_prune += len(batch)
            prune = self._since_prune >= PRUNE_EVERY or not self._queue
            try:
                await run_db(server_log_write, server=self.server, entries=batch, prune=prune)
            except Exception:
                count = len(batch)
                logger.warning("MCP server %s: storing %d log message(s) failed", self.server, count, exc_info=True)
            if prune:
                self._since_prune = 0
        if self.dropped:
            logger.warning("MCP server %s: %d log message(s) dropped (too many at once)", self.server, self.dropped)
            self.dropped = 0

    async def aclose(self) -> None:
        """Let what is queued be written (for CLOSE_WAIT seconds at most)."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), CLOSE_WAIT)
            except TimeoutError:
                self._writer.cancel()
