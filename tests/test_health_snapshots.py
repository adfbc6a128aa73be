"""Periodic health snapshots: providers (through the real SDK against a local wire server) and MCP
servers (a real MCP server process), their Celery tasks and their admin screens."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mcp_servers.host import get_host
from mcp_servers.models import McpServer, McpServerHealthSnapshot
from mcp_servers.tasks import snapshot_mcp_health
from platform_site.celery import app
from providers.models import Provider, ProviderHealthSnapshot
from providers.tasks import snapshot_all_provider_health, snapshot_provider_health

from .conftest import stdio_test_server, wait_until
from .factories import UserFactory
from .fakes.ollama_wire import OllamaWire
from .fakes.wire import Fail

TEST_SERVER_TOOLS = 11  # echo, wipe, peek, add, slow, rendezvous, fail, pid, env, the long-named one, toggle_extra


@pytest.fixture(scope="module")
def ollama_server():
    server = OllamaWire().start()
    yield server
    server.stop()


@pytest.fixture
def ollama(db, ollama_server):
    ollama_server.reset()
    provider = Provider.objects.get(name="ollama")
    provider.base_url = ollama_server.url
    provider.save(update_fields=["base_url"])
    return provider


@pytest.fixture
def admin_client(client, db):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def eager_fan_out():
    # With REDIS_URL set, .delay() inside a task would go to the broker; here the fanned-out tasks run inline.
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


# --- providers -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_provider_snapshot_stores_an_ok_check(ollama, ollama_server):
    snapshot_id = snapshot_provider_health.apply(args=[ollama.pk]).get()

    snapshot = ProviderHealthSnapshot.objects.get()
    assert snapshot.pk == snapshot_id
    assert (snapshot.provider, snapshot.status, snapshot.error, snapshot.code) == (ollama, "ok", "", "")
    assert snapshot.latency_ms is not None
    assert snapshot.latency_ms > 0
    assert [request.path for request in ollama_server.requests] == ["/api/tags"]


@pytest.mark.django_db
def test_provider_snapshot_stores_an_error_when_the_provider_refuses(ollama, ollama_server):
    ollama_server.push(Fail(401, "unauthorized"))

    snapshot_provider_health.apply(args=[ollama.pk]).get()

    snapshot = ProviderHealthSnapshot.objects.get()
    assert (snapshot.status, snapshot.error, snapshot.code) == (
        "error",
        "unauthorized",
        "provider_authentication_failed",
    )
    assert snapshot.latency_ms is not None


@pytest.mark.django_db
def test_snapshot_of_a_deleted_provider_stores_nothing(ollama):
    provider_id = ollama.pk
    ollama.delete()

    assert snapshot_provider_health.apply(args=[provider_id]).get() is None
    assert ProviderHealthSnapshot.objects.count() == 0


@pytest.mark.django_db
def test_snapshot_all_fans_out_one_check_per_enabled_provider(ollama, eager_fan_out, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # unconfigured: an error without any network call
    Provider.objects.filter(name__in=["openai", "gemini"]).update(enabled=False)
    anthropic = Provider.objects.get(name="anthropic")

    fanned_out = snapshot_all_provider_health.apply().get()
    again = snapshot_all_provider_health.apply().get()

    assert fanned_out == again == sorted([anthropic.pk, ollama.pk])
    rows = ProviderHealthSnapshot.objects.order_by("provider__name", "id").values_list(
        "provider__name", "status", "code"
    )
    assert list(rows) == [
        ("anthropic", "error", "provider_not_configured"),
        ("anthropic", "error", "provider_not_configured"),
        ("ollama", "ok", ""),
        ("ollama", "ok", ""),
    ]


@pytest.mark.django_db
def test_provider_changelist_shows_the_latest_snapshot_without_a_query_per_row(admin_client):
    url = reverse("admin:providers_provider_changelist")
    ollama = Provider.objects.get(name="ollama")
    ProviderHealthSnapshot.objects.create(provider=ollama, status="error", error="down", code="provider_unavailable")
    ProviderHealthSnapshot.objects.create(provider=ollama, status="ok", latency_ms=12.4)
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get(url).content.decode()

    for index in range(3):
        provider = Provider.objects.create(name=f"extra{index}", kind="ollama", display_name=f"Extra {index}")
        for status in ("ok", "error", "ok"):
            ProviderHealthSnapshot.objects.create(provider=provider, status=status, latency_ms=5.0)
    with CaptureQueriesContext(connection) as many:
        bigger = admin_client.get(url).content.decode()

    assert '<b class="status-ok">ok</b> 12 ms' in page
    assert "down" not in page
    assert bigger.count('<b class="status-ok">ok</b> 5 ms') == 3
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.django_db
def test_provider_snapshot_admin_filters_by_status(admin_client):
    ollama = Provider.objects.get(name="ollama")
    ProviderHealthSnapshot.objects.create(provider=ollama, status="error", error="connection refused", code="x")
    ProviderHealthSnapshot.objects.create(provider=ollama, status="ok", latency_ms=3)
    url = reverse("admin:providers_providerhealthsnapshot_changelist")

    errors = admin_client.get(url, {"status__exact": "error"})
    add = admin_client.get(reverse("admin:providers_providerhealthsnapshot_add"))

    assert errors.context["cl"].result_count == 1
    assert "connection refused" in errors.content.decode()
    assert add.status_code == 403


# --- MCP servers -------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_mcp_snapshot_records_each_server_as_the_host_sees_it():
    stdio_test_server(timeout_seconds=10).save()
    stdio_test_server(name="off", enabled=False).save()
    host = get_host()
    host.ready(15)
    assert host.call_tool("test__echo", {"text": "hi"}).text == "hi"

    stored = snapshot_mcp_health.apply().get()

    assert stored == 2
    rows = McpServerHealthSnapshot.objects.order_by("server")
    assert [(r.server, r.status, r.tool_count, r.last_error) for r in rows] == [
        ("off", "disabled", 0, ""),
        ("test", "connected", TEST_SERVER_TOOLS, ""),
    ]
    assert rows[0].last_call_ms is None
    assert rows[1].last_call_ms is not None


@pytest.mark.django_db(transaction=True)
def test_mcp_snapshot_of_a_server_that_cannot_start_is_an_error_each_run():
    McpServer.objects.create(name="ghost", transport="stdio", command="/nonexistent/mcp-server-binary")
    host = get_host()
    wait_until(lambda: {s.name: s.status for s in host.statuses()}["ghost"] == "error")

    runs = [snapshot_mcp_health.apply().get() for _ in range(2)]

    assert runs == [1, 1]
    rows = list(McpServerHealthSnapshot.objects.values_list("server", "status", "tool_count"))
    assert rows == [("ghost", "error", 0), ("ghost", "error", 0)]
    for error in McpServerHealthSnapshot.objects.values_list("last_error", flat=True):
        assert "nonexistent" in error or "No such file" in error


@pytest.mark.django_db
def test_mcp_snapshot_admin_lists_and_filters(admin_client):
    McpServerHealthSnapshot.objects.create(server="time", status="connected", tool_count=2, last_call_ms=8)
    McpServerHealthSnapshot.objects.create(server="files", status="error", last_error="spawn failed")
    url = reverse("admin:mcp_servers_mcpserverhealthsnapshot_changelist")

    everything = admin_client.get(url)
    errors = admin_client.get(url, {"status__exact": "error"})

    assert everything.context["cl"].result_count == 2
    assert errors.context["cl"].result_count == 1
    assert '<b class="status-error">error</b>' in errors.content.decode()
    assert "spawn failed" in errors.content.decode()
