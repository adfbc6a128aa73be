"""Cost of a call: admin override, genai-prices data (offline), local models free, unknown models 0."""

from decimal import Decimal

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

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


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("anthropic", "claude-sonnet-4-5"),  # cache reads and writes priced
        ("openai", "gpt-4o-mini"),  # no cache-write price
        ("gemini", "gemini-2.5-flash"),
        ("gemini", "gemini-2.5-pro"),  # tiered above 200k input tokens: never read as linear rates
    ],
)
@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=1234, output_tokens=567),
        Usage(input_tokens=300_000, output_tokens=5, cache_read_tokens=1000, cache_write_tokens=200),
        Usage(input_tokens=7, cache_read_tokens=7),
        Usage(input_tokens=250_001, output_tokens=99_999, cache_write_tokens=250_000),
    ],
)
def test_cost_is_exactly_what_genai_prices_computes(kind, model, usage):
    expected = calc_price(
        PriceUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        model,
        provider_id={"anthropic": "anthropic", "openai": "openai", "gemini": "google"}[kind],
    ).total_price

    assert cost_for(kind=kind, model=model, usage=usage) == Decimal(expected)


def test_cached_tokens_beyond_the_input_count_as_input_not_as_an_error():
    # A server that reports more cached than input tokens: the cached parts are counted as the whole input.
    odd = Usage(input_tokens=10, cache_read_tokens=20, output_tokens=5)

    cost = cost_for(kind="anthropic", model="claude-sonnet-4-5", usage=odd)

    assert cost == cost_for(
        kind="anthropic", model="claude-sonnet-4-5", usage=odd.model_copy(update={"input_tokens": 20})
    )
    assert cost == Decimal("0.000081")  # 20 cache reads at $0.30/M + 5 output at $15/M
