"""Cost of a provider call in USD.

An admin's price override on the ProviderModel row wins; otherwise the adapter
class's ``price_source`` says where list prices come from: the genai-prices
package (its data ships inside the package, so this works offline), nowhere
(local models, e.g. Ollama, cost 0), or only admin rows (OpenAI-compatible
servers). A model nobody prices costs 0 and is logged once per process, never
an exception.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import Usage as PriceUsage
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from .base import ADMIN_PRICES_ONLY, PriceSource
from .models import ProviderModel
from .registry import adapter_class_or_none
from .types import Usage

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
_unpriced_logged: set[tuple[str, str]] = set()


def _override_cost(row: ProviderModel, usage: Usage) -> Decimal:
    input_price = row.input_price_per_mtok or Decimal(0)
    output_price = row.output_price_per_mtok or Decimal(0)
    cached_price = row.cached_input_price_per_mtok if row.cached_input_price_per_mtok is not None else input_price
    uncached = max(usage.input_tokens - usage.cache_read_tokens, 0)
    total = uncached * input_price + usage.cache_read_tokens * cached_price + usage.output_tokens * output_price
    return total / MILLION


def price_source(kind: str) -> PriceSource:
    """The kind's adapter's price source; a kind without an adapter is priced by admin rows only."""
    cls = adapter_class_or_none(kind)
    return cls.price_source if cls is not None else ADMIN_PRICES_ONLY


def _unpriced(kind: str, model: str) -> Decimal:
    if (kind, model) not in _unpriced_logged:
        _unpriced_logged.add((kind, model))
        logger.warning("no price known for %s model %r: counting its cost as 0", kind, model)
    return Decimal(0)


def cost_for(*, kind: str, model: str, usage: Usage, override: ProviderModel | None = None) -> Decimal:
    if override is not None and override.has_price_override:
        return _override_cost(override, usage)
    source = price_source(kind)
    if source.free:
        return Decimal(0)
    if source.genai_prices is None:
        return _unpriced(kind, model)
    try:
        _provider, info = get_snapshot().find_provider_model(model, None, source.genai_prices, None)
    except LookupError:
        return _unpriced(kind, model)
    cached = usage.cache_read_tokens + usage.cache_write_tokens
    if cached > usage.input_tokens:  # the cached parts are parts of the input: a server that says otherwise
        usage = usage.model_copy(update={"input_tokens": cached})
    price = info.get_prices(datetime.now(UTC))
    rates = _linear_rates(price)
    if rates is not None:
        return rates.cost(usage)
    return Decimal(price.calc_price(_price_usage(usage))["total_price"])


def _price_usage(usage: Usage) -> PriceUsage:
    return PriceUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


@dataclass(frozen=True)
class _Rates:
    """USD per million of each kind of token, for a price that is linear in them (no tiers)."""

    uncached_input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal

    def cost(self, usage: Usage) -> Decimal:
        uncached = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        total = (
            uncached * self.uncached_input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        )
        return total / MILLION


# genai-prices recomputes its unit registry on every calc_price (about half a millisecond, on every turn's
# write), so a price without tiers is read once as four rates: exact, since it is linear in the counts.
_rates: dict[int, tuple[ModelPrice, _Rates | None]] = {}
_rates_lock = threading.Lock()


def _linear_rates(price: ModelPrice) -> _Rates | None:
    cached = _rates.get(id(price))
    if cached is not None and cached[0] is price:
        return cached[1]
    rates = None
    if not any(isinstance(value, TieredPrices) for value in vars(price).values()):

        def per_million(**tokens: int) -> Decimal:
            return Decimal(price.calc_price(PriceUsage(**tokens))["total_price"])

        uncached = per_million(input_tokens=1_000_000)
        rates = _Rates(
            uncached_input=uncached,
            output=per_million(output_tokens=1_000_000),
            cache_read=per_million(input_tokens=1_000_000, cache_read_tokens=1_000_000),
            cache_write=per_million(input_tokens=1_000_000, cache_write_tokens=1_000_000),
        )
    with _rates_lock:
        _rates[id(price)] = (price, rates)  # the price object is kept, so its id is not reused
    return rates


def list_prices(*, kind: str, model: str) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """(input, output, cached input) USD per million tokens from the kind's price source, or Nones when unknown."""
    source = price_source(kind)
    if source.free:
        return Decimal(0), Decimal(0), Decimal(0)
    if source.genai_prices is None:
        return None, None, None
    per_input = cost_for(kind=kind, model=model, usage=Usage(input_tokens=1_000_000))
    if per_input == 0:
        return None, None, None
    per_output = cost_for(kind=kind, model=model, usage=Usage(output_tokens=1_000_000))
    per_cached = cost_for(kind=kind, model=model, usage=Usage(input_tokens=1_000_000, cache_read_tokens=1_000_000))
    return per_input, per_output, per_cached
