"""Provider kinds come from the adapter classes in PROVIDER_ADAPTERS: a new provider is one class and one line.

Covers the registry (kinds, defaults read from the classes), the ``openai_compatible`` kind against the
OpenAI wire fake through real turns over REST, validation of kinds, and rows whose kind has no adapter.
"""

from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.urls import reverse

from chats.models import Message
from providers.adapters.openai import OpenAIAdapter
from providers.base import PriceSource
from providers.models import Provider, ProviderHealthSnapshot, ProviderModel
from providers.pricing import cost_for, list_prices
from providers.registry import (
    adapter_class,
    adapter_classes,
    provider_api_key,
    provider_base_url,
    provider_kind_choices,
)
from providers.services import provider_health_snapshot
from providers.types import Usage
from usage.models import UsageRecord

from .factories import ChatFactory, UserFactory
from .fakes.openai_wire import OpenAIWire
from .fakes.wire import Turn

pytestmark = pytest.mark.django_db

LLAMA = "meta-llama/Llama-3.1-8B-Instruct"


class AcmeAdapter(OpenAIAdapter):
    """A fifth provider, whole: its kind and defaults, over a wire the OpenAI adapter already speaks."""

    kind = "acme"
    label = "Acme LLM"
    price_source = PriceSource(genai_prices="openai")
    default_base_url = "https://llm.acme.invalid/v1"
    fallback_key_env = ("ACME_TOKEN",)
    schema_dialect = "gemini"


ACME = f"{__name__}.AcmeAdapter"


@pytest.fixture(scope="module")
def wire_server():
    server = OpenAIWire().start()
    yield server
    server.stop()


@pytest.fixture
def wire(wire_server, settings, monkeypatch):
    """An OpenAI-compatible server (the OpenAI wire fake) serving a Llama and a model OpenAI also sells."""
    wire_server.reset()
    wire_server.models = (LLAMA, "gpt-4o-mini")
    # A key the platform holds for OpenAI itself must never reach another server.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-only")
    settings.PROVIDER_RETRY_BASE_DELAY = 0.01
    settings.PROVIDER_MAX_RETRIES = 1
    return wire_server


@pytest.fixture
def local(wire):
    """A keyless vLLM-like row: base URL only, its Llama priced by an admin row."""
    provider = Provider.objects.create(
        name="local", kind="openai_compatible", display_name="Local vLLM", base_url=f"{wire.url}/v1"
    )
    ProviderModel.objects.create(
        provider=provider,
        model_id=LLAMA,
        display_name="Llama 3.1 8B",
        input_price_per_mtok=Decimal("2"),
        output_price_per_mtok=Decimal("4"),
    )
    return provider


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def _turn(api, chat, **body):
    return api.post(f"/api/chats/{chat.pk}/messages", {"message": "Hello", **body}, format="json")


# --- the registry ------------------------------------------------------------------------


def test_the_kinds_are_those_of_the_registered_adapter_classes():
    assert provider_kind_choices() == [
        ("anthropic", "Anthropic"),
        ("openai", "OpenAI"),
        ("gemini", "Google Gemini"),
        ("ollama", "Ollama"),
        ("openai_compatible", "OpenAI-compatible server (vLLM, LM Studio, llama.cpp, OpenRouter, Groq, Together)"),
    ]
    assert adapter_class("openai_compatible").__mro__[1] is OpenAIAdapter


def test_each_kind_declares_its_defaults(monkeypatch):
    for name in ("GEMINI_API_KEY", "OLLAMA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key")
    gemini = Provider.objects.get(name="gemini")
    ollama = Provider.objects.get(name="ollama")

    assert provider_api_key(gemini) == "g-key"
    assert provider_base_url(ollama) == "http://localhost:11434"
    assert [adapter.price_source for adapter in adapter_classes().values()] == [
        PriceSource(genai_prices="anthropic"),
        PriceSource(genai_prices="openai"),
        PriceSource(genai_prices="google"),
        PriceSource(free=True),
        PriceSource(),
    ]


def test_registering_an_adapter_class_makes_its_kind_valid_with_its_defaults(settings, monkeypatch):
    # given: a row of a kind nothing provides yet
    row = Provider(name="acme", kind="acme", display_name="Acme")
    with pytest.raises(ValidationError):
        row.full_clean()

    # when: its class is added to the setting, and nothing else changes
    settings.PROVIDER_ADAPTERS = [*settings.PROVIDER_ADAPTERS, ACME]

    # then: the kind is valid, and everything about it is read from the class
    row.full_clean()
    row.save()
    assert provider_kind_choices()[-1] == ("acme", "Acme LLM")
    assert adapter_class("acme") is AcmeAdapter
    assert provider_base_url(row) == "https://llm.acme.invalid/v1"
    monkeypatch.setenv("ACME_BASE_URL", "http://acme.internal/v1")
    assert provider_base_url(row) == "http://acme.internal/v1"
    assert provider_api_key(row) is None
    monkeypatch.setenv("ACME_TOKEN", "acme-token")
    assert provider_api_key(row) == "acme-token"
    assert list_prices(kind="acme", model="gpt-4o-mini") == (Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))


def test_a_registered_adapter_answers_a_turn_with_its_key_and_prices(api, user, wire, settings, monkeypatch):
    settings.PROVIDER_ADAPTERS = [*settings.PROVIDER_ADAPTERS, ACME]
    monkeypatch.setenv("ACME_TOKEN", "acme-token")
    Provider.objects.create(name="acme", kind="acme", display_name="Acme", base_url=f"{wire.url}/v1")
    wire.push(Turn(text="Hello from Acme", input_tokens=1000, output_tokens=100))

    response = _turn(api, ChatFactory(owner=user), provider="acme", model="gpt-4o-mini")

    assert response.status_code == 200, response.content
    assert response.json()["response"] == "Hello from Acme"
    assert response.json()["usage"]["cost"] == "0.00021000"  # its price source: OpenAI's list prices
    [request] = wire.requests_to("/chat/completions")
    assert request.headers["authorization"] == "Bearer acme-token"  # its fallback key variable


def test_a_misdeclared_adapter_list_is_a_clear_configuration_error(settings):
    settings.PROVIDER_ADAPTERS = [*settings.PROVIDER_ADAPTERS, "providers.adapters.openai.OpenAIAdapter"]
    with pytest.raises(ImproperlyConfigured, match="both declare kind 'openai'"):
        adapter_classes()

    settings.PROVIDER_ADAPTERS = ["providers.models.Provider"]
    with pytest.raises(ImproperlyConfigured, match=r"providers\.models\.Provider is not a ProviderAdapter subclass"):
        adapter_classes()


# --- openai_compatible ----------------------------------------------------------------------


def test_openai_compatible_row_answers_a_real_turn_priced_by_its_admin_row(api, user, local, wire):
    chat = ChatFactory(owner=user)
    wire.push(Turn(text="Hi from Llama", input_tokens=1000, output_tokens=500))

    response = _turn(api, chat, provider="local", model=LLAMA)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["response"] == "Hi from Llama"
    # 1000 in * $2/M + 500 out * $4/M
    assert body["usage"] == {"input_tokens": 1000, "output_tokens": 500, "cost": "0.00400000"}
    record = UsageRecord.objects.get()
    assert (record.provider, record.model, record.cost) == ("local", LLAMA, Decimal("0.004"))
    assistant = Message.objects.get(pk=body["message_id"])
    assert (assistant.provider, assistant.model) == ("local", LLAMA)
    [request] = wire.requests_to("/chat/completions")
    assert request.json["model"] == LLAMA
    # No key variable: a dummy bearer the SDK accepts, never the key held for OpenAI.
    assert request.headers["authorization"] == "Bearer not-configured"


def test_openai_compatible_has_no_list_price_even_for_a_model_openai_sells(api, user, local, wire):
    wire.push(Turn(text="ok", input_tokens=1000, output_tokens=100))

    response = _turn(api, ChatFactory(owner=user), provider="local", model="gpt-4o-mini")

    assert response.status_code == 200, response.content
    assert response.json()["usage"]["cost"] == "0.00000000"
    assert cost_for(kind="openai", model="gpt-4o-mini", usage=Usage(input_tokens=1000, output_tokens=100)) > 0


def test_openai_compatible_row_sends_the_key_its_row_names(api, user, local, wire, monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "vllm-secret")
    Provider.objects.filter(pk=local.pk).update(api_key_env="VLLM_API_KEY")
    wire.push(Turn(text="ok"))

    response = _turn(api, ChatFactory(owner=user), provider="local", model=LLAMA)

    assert response.status_code == 200, response.content
    assert wire.requests_to("/chat/completions")[-1].headers["authorization"] == "Bearer vllm-secret"


def test_openai_compatible_model_list_is_the_servers_with_admin_rows_and_only_their_prices(api, local):
    response = api.get("/api/providers/local/models")

    assert response.status_code == 200
    body = response.json()
    assert (body["live"], body["error"]) == (True, None)
    assert body["models"] == [
        {
            "id": "gpt-4o-mini",
            "display_name": "gpt-4o-mini",
            "context_window": None,
            "input_price_per_mtok": None,
            "output_price_per_mtok": None,
            "cached_input_price_per_mtok": None,
        },
        {
            "id": LLAMA,
            "display_name": "Llama 3.1 8B",
            "context_window": None,
            "input_price_per_mtok": "2.000000",
            "output_price_per_mtok": "4.000000",
            "cached_input_price_per_mtok": None,
        },
    ]


def test_openai_compatible_row_in_the_provider_list_and_health(api, local):
    listed = {item["name"]: item for item in api.get("/api/providers").json()}
    health = api.get("/api/providers/local/health")

    assert listed["local"]["kind"] == "openai_compatible"
    assert (listed["local"]["configured"], listed["local"]["problem"]) == (True, None)
    assert listed["local"]["base_url"] == local.base_url
    assert listed["local"]["capabilities"]["tools"] is True
    assert health.status_code == 200
    assert health.json()["status"] == "ok"


def test_openai_compatible_needs_its_base_url():
    row = Provider(name="vllm", kind="openai_compatible", display_name="vLLM")

    with pytest.raises(ValidationError) as refused:
        row.full_clean()

    assert refused.value.message_dict == {
        "base_url": ["A provider of kind 'openai_compatible' needs its server's base URL, e.g. http://vllm:8000/v1."]
    }


def test_openai_compatible_row_saved_without_base_url_is_not_configured(api, user):
    Provider.objects.create(name="nowhere", kind="openai_compatible", display_name="Nowhere")

    listed = {item["name"]: item for item in api.get("/api/providers").json()}
    turn = _turn(api, ChatFactory(owner=user), provider="nowhere", model=LLAMA)

    assert listed["nowhere"]["configured"] is False
    assert listed["nowhere"]["problem"] == "no base URL (a provider of kind 'openai_compatible' must name its server's)"
    assert turn.status_code == 400
    assert turn.json()["error"]["code"] == "provider_not_configured"


def test_admin_adds_an_openai_compatible_row_and_refuses_one_without_base_url(admin_client, wire):
    url = reverse("admin:providers_provider_add")
    form = {
        "name": "lmstudio",
        "kind": "openai_compatible",
        "display_name": "LM Studio",
        "base_url": "",
        "api_key_env": "",
        "enabled": "on",
        "models-TOTAL_FORMS": "0",
        "models-INITIAL_FORMS": "0",
    }

    page = admin_client.get(url)
    refused = admin_client.post(url, form)
    saved = admin_client.post(url, {**form, "base_url": f"{wire.url}/v1"})

    assert page.status_code == 200
    assert '<option value="openai_compatible">OpenAI-compatible server' in page.content.decode()
    assert refused.status_code == 200
    assert "needs its server&#x27;s base URL" in refused.content.decode()
    assert saved.status_code == 302
    assert Provider.objects.get(name="lmstudio").base_url == f"{wire.url}/v1"


# --- validation and rows whose kind has no adapter -----------------------------------------


def test_an_unknown_kind_is_refused_with_a_clear_message():
    row = Provider(name="mystery", kind="cohere", display_name="Mystery")

    with pytest.raises(ValidationError) as refused:
        row.full_clean()

    assert refused.value.message_dict == {
        "kind": ["Unknown provider kind 'cohere': no adapter in settings.PROVIDER_ADAPTERS declares it."]
    }


def test_admin_refuses_an_unknown_kind(admin_client):
    response = admin_client.post(
        reverse("admin:providers_provider_add"),
        {
            "name": "mystery",
            "kind": "cohere",
            "display_name": "Mystery",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "Unknown provider kind &#x27;cohere&#x27;: no adapter in settings.PROVIDER_ADAPTERS declares it." in (
        response.content.decode()
    )
    assert not Provider.objects.filter(name="mystery").exists()


@pytest.fixture
def orphan():
    """A stored row whose kind's adapter was removed from PROVIDER_ADAPTERS."""
    return Provider.objects.create(name="legacy", kind="cohere", display_name="Legacy", api_key_env="COHERE_KEY")


def test_a_row_whose_kind_has_no_adapter_is_shown_as_not_configured_in_the_api(api, user, orphan):
    problem = (
        "its kind 'cohere' has no adapter (add the adapter class to settings.PROVIDER_ADAPTERS, or change the kind)"
    )

    listed = api.get("/api/providers")
    models = api.get("/api/providers/legacy/models")
    health = api.get("/api/providers/legacy/health")
    turn = _turn(api, ChatFactory(owner=user), provider="legacy", model="command-r")

    assert listed.status_code == 200
    legacy = {item["name"]: item for item in listed.json()}["legacy"]
    assert (legacy["configured"], legacy["problem"], legacy["base_url"]) == (False, problem, None)
    assert set(legacy["capabilities"].values()) == {False}
    assert models.status_code == 200
    assert (models.json()["live"], models.json()["error"]) == (False, f"Not configured: {problem}.")
    assert health.status_code == 200
    assert health.json() == {
        "status": "error",
        "latency_ms": None,
        "error": f"Not configured: {problem}.",
        "code": "provider_not_configured",
    }
    assert turn.status_code == 400
    assert turn.json()["error"]["code"] == "provider_not_configured"
    assert turn.json()["error"]["message"] == f"Provider 'legacy' is not configured: {problem}."


def test_a_row_whose_kind_has_no_adapter_costs_nothing_and_gets_an_error_snapshot(orphan):
    snapshot = provider_health_snapshot(provider_id=orphan.pk)

    assert cost_for(kind="cohere", model="command-r", usage=Usage(input_tokens=1000)) == 0
    assert list_prices(kind="cohere", model="command-r") == (None, None, None)
    assert ProviderHealthSnapshot.objects.get() == snapshot
    assert (snapshot.status, snapshot.code) == ("error", "provider_not_configured")


def test_a_row_whose_kind_has_no_adapter_is_shown_in_admin_and_must_be_fixed_to_save(admin_client, orphan):
    change_url = reverse("admin:providers_provider_change", args=[orphan.pk])

    changelist = admin_client.get(reverse("admin:providers_provider_changelist"))
    change = admin_client.get(change_url)
    resaved = admin_client.post(
        change_url,
        {
            "name": "legacy",
            "kind": "cohere",
            "display_name": "Legacy",
            "api_key_env": "COHERE_KEY",
            "models-TOTAL_FORMS": "0",
            "models-INITIAL_FORMS": "0",
        },
    )

    assert changelist.status_code == 200
    assert "cohere (no adapter: not configured)" in changelist.content.decode()
    assert change.status_code == 200
    assert '<option value="cohere" selected>cohere (no adapter: pick a registered kind)</option>' in (
        change.content.decode()
    )
    assert resaved.status_code == 200
    assert "Unknown provider kind &#x27;cohere&#x27;: no adapter in settings.PROVIDER_ADAPTERS declares it." in (
        resaved.content.decode()
    )
    orphan.refresh_from_db()
    assert orphan.kind == "cohere"
