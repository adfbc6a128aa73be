"""ensure_default_mcp_servers when Redis, which carries its "config changed" notice, is away."""

import io
import logging

import pytest
from django.core.management import call_command

from mcp_servers.models import McpServer

from .conftest import free_port

# The notice goes out when the rows commit: only a real commit sends it.
pytestmark = pytest.mark.django_db(transaction=True)

COMMAND_LOGGER = "mcp_servers.management.commands.ensure_default_mcp_servers"
BROADCAST_LOGGER = "mcp_servers.broadcast"


@pytest.fixture
def redis_away(settings, tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    settings.MCP_WORKSPACE_DIR = str(tmp_path / "workspace")


def test_creates_the_servers_and_warns_when_redis_is_away(redis_away, caplog):
    out = io.StringIO()

    with caplog.at_level(logging.WARNING):
        call_command("ensure_default_mcp_servers", stdout=out)

    assert out.getvalue().strip() == "Created MCP servers: time, filesystem"
    assert sorted(McpServer.objects.values_list("name", flat=True)) == ["filesystem", "time"]
    # The rows are stored; the announcement that could not go out is logged once (by the broadcast itself).
    warnings = [record for record in caplog.records if record.name in (COMMAND_LOGGER, BROADCAST_LOGGER)]
    assert [(record.name, record.levelno) for record in warnings] == [(BROADCAST_LOGGER, logging.WARNING)]
    assert warnings[0].getMessage().startswith("could not announce an MCP configuration change (Redis away)")


def test_a_second_run_without_redis_has_nothing_to_announce(redis_away, caplog):
    call_command("ensure_default_mcp_servers", stdout=io.StringIO())
    caplog.clear()
    out = io.StringIO()

    with caplog.at_level(logging.WARNING, logger=COMMAND_LOGGER):
        call_command("ensure_default_mcp_servers", stdout=out)

    assert out.getvalue().strip() == "Default MCP servers already configured."
    assert [record for record in caplog.records if record.name == COMMAND_LOGGER] == []
    assert McpServer.objects.count() == 2
