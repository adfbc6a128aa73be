"""Cost of a provider call in USD.

An admin's price override on the ProviderModel row wins; otherwise prices come
from the genai-prices package (its data ships inside the package, so this works
offline). Ollama is local and costs 0. A model nobody prices costs 0 and is
logged once per process, never an exception.
"""

import logging
from decimal import Decimal

from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from .models import ProviderKind, ProviderModel
from .types import Usage

logger = logging.getLogger(__name__)

GENAI_PRICES_PROVIDER = {
    ProviderKind.ANTHROPIC: "anthropic",
    ProviderKind.OPENAI: "openai",
    ProviderKind.GEMINI: "google",
}
MILLION = Decimal(1_000_000)
_unpriced_logged: set[tuple[str, str]] = set()


def _override_cost(row: ProviderModel, usage: Usage) -> Decimal:
    input_price = row.input_price_per_mtok or Decimal(0)
    output_price = row.output_price_per_mtok or Decimal(0)
    cached_price = row.cached_input_price_per_mtok if row.cached_input_price_per_mtok is not None else input_price
    uncached = max(usage.input_tokens - usage.cache_read_tokens, 0)
    total = uncached * input_price + usage.cache_read_tokens * cached_price + usage.output_tokens * output_price
    return total / MILLION


def cost_for(*, kind: str, model: str, usage: Usage, override: ProviderModel | None = None) -> Decimal:
    if override is not None and override.has_price_override:
        return _override_cost(override, usage)
    provider_id = GENAI_PRICES_PROVIDER.get(ProviderKind(kind)) if kind in ProviderKind.values else None
    if provider_id is None:
        return Decimal(0)
    try:
        price = calc_price(
            PriceUsage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
            model,
            provider_id=provider_id,
        )
    except LookupError:
        if (kind, model) not in _unpriced_logged:
            _unpriced_logged.add((kind, model))
            logger.warning("no price known for %s model %r: counting its cost as 0", kind, model)
        return Decimal(0)
    return Decimal(price.total_price)


def list_prices(*, kind: str, model: str) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(input, output, cached input) USD per million tokens from genai-prices, or Nones when unknown."""
    if kind == ProviderKind.OLLAMA:
        return Decimal(0), Decimal(0), Decimal(0)
    per_input = cost_for(kind=kind, model=model, usage=Usage(input_tokens=1_000_000))
    if per_input == 0:
        return None, None, None
    per_output = cost_for(kind=kind, model=model, usage=Usage(output_tokens=1_000_000))
    per_cached = cost_for(kind=kind, model=model, usage=Usage(input_tokens=1_000_000, cache_read_tokens=1_000_000))
    return per_input, per_output, per_cached
