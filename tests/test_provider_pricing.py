"""Cost of a call: admin override, genai-prices data (offline), local models free, unknown models 0."""

from decimal import Decimal

import pytest

from providers.models import Provider, ProviderModel
from providers.pricing import cost_for, list_prices
from providers.types import Usage

pytestmark = pytest.mark.django_db


def test_anthropic_price_counts_cache_reads_at_their_rate():
    # Sonnet 4.5: $3/M input, $0.30/M cache read, $15/M output
    usage = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=100)

    assert cost_for(kind="anthropic", model="claude-sonnet-4-5", usage=usage) == Decimal("0.00396")


def test_openai_and_gemini_are_priced_from_bundled_data():
    usage = Usage(input_tokens=1000, output_tokens=100)

    assert cost_for(kind="openai", model="gpt-4o-mini", usage=usage) == Decimal("0.00021")
    assert cost_for(kind="gemini", model="gemini-2.5-flash", usage=usage) == Decimal("0.00055")


def test_ollama_is_free_and_unknown_models_cost_zero(caplog):
    usage = Usage(input_tokens=10_000, output_tokens=10_000)

    assert cost_for(kind="ollama", model="llama3.2", usage=usage) == 0
    assert cost_for(kind="openai", model="my-private-finetune", usage=usage) == 0
    assert cost_for(kind="openai", model="my-private-finetune", usage=usage) == 0
    assert [r.message for r in caplog.records].count(
        "no price known for openai model 'my-private-finetune': counting its cost as 0"
    ) == 1


def test_admin_override_wins():
    row = ProviderModel.objects.create(
        provider=Provider.objects.get(name="openai"),
        model_id="gpt-4o-mini",
        input_price_per_mtok=Decimal("1"),
        output_price_per_mtok=Decimal("2"),
        cached_input_price_per_mtok=Decimal("0.5"),
    )
    usage = Usage(input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=500_000)

    # 600k uncached * $1 + 400k cached * $0.5 + 500k out * $2 = 0.6 + 0.2 + 1.0
    assert cost_for(kind="openai", model="gpt-4o-mini", usage=usage, override=row) == Decimal("1.8")


def test_list_prices_per_million():
    assert list_prices(kind="openai", model="gpt-4o-mini") == (Decimal("0.15"), Decimal("0.6"), Decimal("0.075"))
    assert list_prices(kind="openai", model="unknown-model-x") == (None, None, None)
    assert list_prices(kind="ollama", model="llama3.2") == (0, 0, 0)
