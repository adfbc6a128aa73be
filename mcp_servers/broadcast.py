"""Config changes reach every worker's MCP host.

After a McpServer row is saved or deleted (and the transaction commits), a
message goes to the ``mcp-config`` Channels group over Redis when REDIS_URL is
set; each host in each process is a member and re-reads the configuration,
reconnecting only servers that changed, and the process forgets its copy of the
access rules. Without Redis there is one process, so its host is told directly.

This module imports neither the host nor the selectors: the app's ready() wires
them in (``broadcast_handlers`` here, ``host_listen_with`` there).
"""

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import BaseChannelLayer, channel_layers, get_channel_layer
from django.conf import settings

from platform_site.exceptions import REDIS_AWAY

logger = logging.getLogger(__name__)

GROUP = "mcp-config"
MESSAGE = {"type": "mcp.config.changed"}
# channels_redis forgets group members after a day; rejoin well before that.
REJOIN_SECONDS = 3600
REDIS_RETRY_SECONDS = 1.0


class Listener(Protocol):
    """What ``listen_for_config_changes`` needs of a host."""

    listening: threading.Event

    async def areload(self) -> list[str]: ...


def _nothing() -> None:
    pass


# What this process does on a change: forget its cached access rules (in every process that hears of it) and,
# when nobody hears it over Redis, have its own host reload. Wired by the app's ready().
_forget_access_rules: Callable[[], None] = _nothing
_reload_here: Callable[[], None] = _nothing


def broadcast_handlers(*, forget: Callable[[], None], reload_here: Callable[[], None]) -> None:
    """Set what a change does in this process: ``forget`` cached access rules, ``reload_here`` its host."""
    global _forget_access_rules, _reload_here
    _forget_access_rules, _reload_here = forget, reload_here


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None, "settings always configure CHANNEL_LAYERS"
    return layer


def _announce_failed() -> None:
    # The row is stored: the save must not fail. This process applies it now; the other workers do when their
    # listener gets Redis back (it reloads then), or on the next announcement.
    logger.warning("could not announce an MCP configuration change (Redis away): applied in this process only")
    _reload_here()


async def abroadcast_config_changed() -> None:
    _forget_access_rules()  # this process at once; the others when the message reaches them
    if not settings.REDIS_URL:
        _reload_here()
        return
    try:
        await _layer().group_send(GROUP, MESSAGE)
    except REDIS_AWAY:
        _announce_failed()


def broadcast_config_changed() -> None:
    """Tell every host to re-read MCP server configuration. Call after commit."""
    _forget_access_rules()  # this process at once; the others when the message reaches them
    if not settings.REDIS_URL:
        _reload_here()
        return
    try:
        async_to_sync(_layer().group_send)(GROUP, MESSAGE)
    except REDIS_AWAY:
        _announce_failed()


async def _rejoin_when_back(layer: BaseChannelLayer, channel: str) -> None:
    while True:
        await asyncio.sleep(REDIS_RETRY_SECONDS)
        try:
            await layer.group_add(GROUP, channel)
            return
        except REDIS_AWAY:
            continue


async def listen_for_config_changes(host: Listener) -> None:
    """Runs on the host's loop for its lifetime: reload whenever a change is announced."""
    if not settings.REDIS_URL:
        host.listening.set()
        return
    # A layer of our own: channels_redis allows receiving on one event loop per layer instance.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    channel = await layer.new_channel()
    try:
        await layer.group_add(GROUP, channel)
        host.listening.set()
        while True:
            try:
                await asyncio.wait_for(layer.receive(channel), timeout=REJOIN_SECONDS)
            except TimeoutError:
                await layer.group_add(GROUP, channel)
                continue
            except REDIS_AWAY:
                # Announcements made meanwhile are lost: once Redis answers again, rejoin and reload anyway.
                await _rejoin_when_back(layer, channel)
            _forget_access_rules()
            try:
                changed = await host.areload()
                logger.info("MCP configuration changed; reconnected: %s", ", ".join(changed) or "none")
            except Exception:
                logger.exception("reloading MCP configuration failed")
    finally:
        # Bounded: shutting down must not wait on Redis (which may be gone).
        for cleanup in (layer.group_discard(GROUP, channel), layer.flush()):
            try:
                await asyncio.wait_for(cleanup, 2)
            except Exception:
                logger.debug("leaving %s failed", GROUP, exc_info=True)
