"""REST surface of providers: list, models (live list merged with admin rows), health."""

import pytest

from providers.models import Provider, ProviderModel

from .conftest import free_port
from .fakes.ollama_wire import OllamaWire
from .fakes.wire import Fail

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ollama_server():
    server = OllamaWire(models=["llama3.2", "qwen3:8b"]).start()
    yield server
    server.stop()


@pytest.fixture
def ollama(ollama_server, monkeypatch):
    ollama_server.reset()
    monkeypatch.setenv("OLLAMA_BASE_URL", ollama_server.url)
    return ollama_server


@pytest.fixture
def no_keys(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_list_shows_each_provider_with_configuration_but_no_secrets(api, no_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    Provider.objects.filter(name="openai").update(base_url="https://user:hunter2@llm.example.com/v1")

    response = api.get("/api/providers")

    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json()}
    assert set(by_name) == {"anthropic", "openai", "gemini", "ollama"}
    assert by_name["openai"]["configured"] is True
    assert by_name["openai"]["base_url"] == "https://llm.example.com/v1"
    assert by_name["anthropic"]["configured"] is False
    assert by_name["ollama"]["configured"] is True  # local: no key needed
    assert by_name["anthropic"]["capabilities"]["thinking"] is True
    assert by_name["openai"]["capabilities"]["tools"] is True
    assert "sk-secret-value" not in response.content.decode()
    assert "hunter2" not in response.content.decode()


def _listed(api) -> dict[str, dict]:
    return {item["name"]: item for item in api.get("/api/providers").json()}


def test_ollama_with_nothing_listening_is_unreachable_but_still_configured(api, monkeypatch):
    # given: an Ollama base URL whose port nobody listens on
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("OLLAMA_BASE_URL", url)

    # when
    ollama = _listed(api)["ollama"]

    # then
    assert (ollama["status"], ollama["configured"]) == ("unreachable", True)
    assert ollama["problem"] == f"not reachable at {url}"


def test_ollama_at_a_listening_server_is_ready(api, ollama):
    listed = _listed(api)["ollama"]

    assert (listed["status"], listed["configured"], listed["problem"]) == ("ready", True, None)


def test_ollama_row_base_url_is_probed_not_the_default(api, ollama, monkeypatch):
    # given: the row names a closed port; the environment's URL (a live server) must not hide it
    url = f"http://127.0.0.1:{free_port()}"
    Provider.objects.filter(name="ollama").update(base_url=url)

    listed = _listed(api)["ollama"]

    assert (listed["status"], listed["problem"]) == ("unreachable", f"not reachable at {url}")


def test_keyed_provider_without_its_key_is_no_key(api, no_keys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")

    listed = _listed(api)

    assert (listed["anthropic"]["status"], listed["anthropic"]["configured"]) == ("no_key", False)
    assert listed["anthropic"]["problem"] == "no API key (set ANTHROPIC_API_KEY in the environment)"
    assert (listed["gemini"]["status"], listed["gemini"]["configured"]) == ("no_key", False)
    # a keyed provider with its key is ready without a call to its (public) API
    assert (listed["openai"]["status"], listed["openai"]["problem"]) == ("ready", None)


def test_google_api_key_is_accepted_for_gemini(api, no_keys, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")

    by_name = {item["name"]: item for item in api.get("/api/providers").json()}

    assert by_name["gemini"]["configured"] is True


@pytest.mark.parametrize("path", ["/api/providers/nope/models", "/api/providers/nope/health"])
def test_unknown_provider_is_404(api, path):
    response = api.get(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_provider"


def test_models_merge_live_list_with_admin_rows(api, ollama):
    provider = Provider.objects.get(name="ollama")
    ProviderModel.objects.create(
        provider=provider, model_id="llama3.2:latest", display_name="Llama 3.2", context_window=131072
    )
    ProviderModel.objects.create(provider=provider, model_id="qwen3:8b", enabled=False)
    ProviderModel.objects.create(provider=provider, model_id="custom:1b", display_name="Custom")

    response = api.get("/api/providers/ollama/models")

    assert response.status_code == 200
    body = response.json()
    assert body["live"] is True
    assert body["error"] is None
    models = {m["id"]: m for m in body["models"]}
    assert set(models) == {"llama3.2:latest", "custom:1b"}
    assert models["llama3.2:latest"]["display_name"] == "Llama 3.2"
    assert models["llama3.2:latest"]["context_window"] == 131072
    assert models["llama3.2:latest"]["input_price_per_mtok"] == "0.000000"
    assert len(ollama.requests_to("/api/tags")) == 1


def test_models_of_unconfigured_provider_come_from_rows_with_the_reason(api, no_keys):
    ProviderModel.objects.create(provider=Provider.objects.get(name="openai"), model_id="gpt-4o-mini")

    body = api.get("/api/providers/openai/models").json()

    assert body["live"] is False
    assert "Not configured" in body["error"]
    assert [m["id"] for m in body["models"]] == ["gpt-4o-mini"]
    assert body["models"][0]["input_price_per_mtok"] == "0.150000"


def test_health_ok_with_latency(api, ollama):
    body = api.get("/api/providers/ollama/health").json()

    assert body["status"] == "ok"
    assert body["latency_ms"] > 0
    assert body["error"] is None


def test_health_reports_a_failing_provider(api, ollama):
    ollama.push(Fail(401, "unauthorized"))

    body = api.get("/api/providers/ollama/health").json()

    assert body["status"] == "error"
    assert body["code"] == "provider_authentication_failed"


def test_health_says_clearly_when_not_configured(api, no_keys):
    body = api.get("/api/providers/anthropic/health").json()

    assert body == {
        "status": "error",
        "latency_ms": None,
        "error": "Not configured: no API key in the environment.",
        "code": "provider_not_configured",
    }


def test_base_url_env_var_is_read_at_call_time(api, ollama, monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:9")  # nothing listens there

    assert api.get("/api/providers/ollama/health").json()["status"] == "error"

    monkeypatch.setenv("OLLAMA_BASE_URL", ollama.url)
    assert api.get("/api/providers/ollama/health").json()["status"] == "ok"


async def test_model_list_is_cached_per_adapter_and_health_is_always_live(ollama_server):
    from .fakes.providers import adapter_on

    ollama_server.reset()
    adapter = adapter_on("ollama", ollama_server)

    first = await adapter.list_models()
    second = await adapter.list_models()
    await adapter.health()

    assert [m.id for m in first] == ["llama3.2:latest", "qwen3:8b"]
    assert second == first
    assert len(ollama_server.requests_to("/api/tags")) == 2  # one list, one health check


async def test_adapters_are_reused_on_one_event_loop(monkeypatch, ollama_server):
    from providers.registry import adapter_for

    monkeypatch.setenv("OLLAMA_BASE_URL", ollama_server.url)
    provider = await Provider.objects.aget(name="ollama")

    assert adapter_for(provider) is adapter_for(provider)
