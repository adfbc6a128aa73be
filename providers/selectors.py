"""Reads of providers: rows, their live model lists merged with admin rows, and health.

Provider and model rows change only in admin, yet every turn reads them: each
process keeps them for ``CONFIG_CACHE_SECONDS``, and a save or delete in this
process clears its copy at once (``providers.apps``).
"""

import time
from dataclasses import dataclass

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery

from platform_site.db import run_db
from platform_site.exceptions import NotFound, ValidationFailed

from .errors import ProviderError
from .models import Provider, ProviderHealthSnapshot, ProviderModel
from .pricing import list_prices
from .registry import adapter_for, provider_probe_cache_clear, provider_problem
from .types import HealthResult, ModelInfo


def provider_list() -> list[Provider]:
    return list(Provider.objects.all())


_rows: dict[str, tuple[float, Provider | None, dict[str, ProviderModel]]] = {}


def provider_cache_clear() -> None:
    _rows.clear()
    provider_probe_cache_clear()  # a row's new base URL is probed afresh


def _provider_cached(name: str) -> tuple[Provider | None, dict[str, ProviderModel]]:
    now = time.monotonic()
    entry = _rows.get(name)
    if entry is None or now - entry[0] > settings.CONFIG_CACHE_SECONDS:
        provider = Provider.objects.filter(name=name).first()
        models = {row.model_id: row for row in ProviderModel.objects.filter(provider=provider)} if provider else {}
        entry = _rows[name] = (now, provider, models)
    return entry[1], entry[2]


def provider_cached(name: str) -> Provider | None:
    """The provider named ``name`` (any state) as this process last read it (CONFIG_CACHE_SECONDS), or None."""
    return _provider_cached(name)[0]


def provider_resolve(*, name: str) -> Provider:
    """The provider named ``name`` (any state), or ValidationFailed ``unknown_provider``."""
    provider, _models = _provider_cached(name)
    if provider is None:
        raise ValidationFailed(f"Unknown provider {name!r}.", code="unknown_provider", details={"provider": [name]})
    return provider


def provider_for_turn(*, name: str, model: str) -> tuple[Provider, ProviderModel | None]:
    """An enabled, configured provider and its admin row for ``model`` (if any), or ValidationFailed."""
    provider = provider_resolve(name=name)
    if not provider.enabled:
        raise ValidationFailed(f"Provider {name!r} is disabled.", code="provider_disabled")
    problem = provider_problem(provider)
    if problem is not None:
        raise ValidationFailed(f"Provider {name!r} is not configured: {problem}.", code="provider_not_configured")
    row = _provider_cached(name)[1].get(model)
    if row is not None and not row.enabled:
        raise ValidationFailed(f"Model {model!r} is disabled on {name!r}.", code="model_disabled")
    return provider, row


async def provider_check_model(*, provider: Provider, model: str) -> None:
    """Reject a model the provider does not list; if the list cannot be read, let the provider decide."""
    try:
        models = await adapter_for(provider).list_models()
    except ProviderError:
        return
    known = {info.id for info in models}
    # Ollama resolves a name without a tag to ":latest".
    if models and model not in known and f"{model}:latest" not in known:
        raise ValidationFailed(
            f"Unknown model {model!r} for provider {provider.name!r}.", code="unknown_model", details={"model": [model]}
        )


def provider_get(*, name: str) -> Provider:
    provider = Provider.objects.filter(name=name).first()
    if provider is None:
        raise NotFound(f"Unknown provider {name!r}.", code="unknown_provider")
    return provider


async def aprovider_get(*, name: str) -> Provider:
    return await run_db(provider_get, name=name)


@dataclass(frozen=True)
class ModelListing:
    provider: Provider
    models: list[ModelInfo]
    live: bool
    error: str | None


async def provider_models(*, provider: Provider) -> ModelListing:
    """The provider's own list (cached per process) merged with admin rows; disabled rows hide a model."""
    rows = await run_db(lambda: {row.model_id: row for row in ProviderModel.objects.filter(provider=provider)})
    live: list[ModelInfo] = []
    error = None
    problem = provider_problem(provider)
    if problem is None:
        try:
            live = await adapter_for(provider).list_models()
        except ProviderError as exc:
            error = exc.message
    else:
        error = f"Not configured: {problem}."

    merged: dict[str, ModelInfo] = {info.id: info for info in live}
    for model_id, row in rows.items():
        if not row.enabled:
            merged.pop(model_id, None)
            continue
        base = merged.get(model_id, ModelInfo(id=model_id))
        merged[model_id] = base.model_copy(
            update={
                "display_name": row.display_name or base.display_name,
                "context_window": row.context_window or base.context_window,
            }
        )

    priced = []
    for model_id, info in sorted(merged.items()):
        override = rows.get(model_id)
        if override is not None and override.has_price_override:
            prices = (
                override.input_price_per_mtok,
                override.output_price_per_mtok,
                override.cached_input_price_per_mtok,
            )
        else:
            prices = list_prices(kind=provider.kind, model=model_id)
        priced.append(
            info.model_copy(
                update={
                    "input_price_per_mtok": prices[0],
                    "output_price_per_mtok": prices[1],
                    "cached_input_price_per_mtok": prices[2],
                }
            )
        )
    return ModelListing(provider=provider, models=priced, live=error is None, error=error)


async def provider_health(*, provider: Provider) -> HealthResult:
    problem = provider_problem(provider)
    if problem is not None:
        return HealthResult(status="error", error=f"Not configured: {problem}.", code="provider_not_configured")
    return await adapter_for(provider).health()


def provider_ids_enabled() -> list[int]:
    return list(Provider.objects.filter(enabled=True).order_by("pk").values_list("pk", flat=True))


def providers_with_latest_health(*, providers: QuerySet[Provider]) -> QuerySet[Provider]:
    """``providers`` annotated with their latest snapshot's status, latency and time, in the same query."""
    latest = ProviderHealthSnapshot.objects.filter(provider=OuterRef("pk")).order_by("-created_at", "-id")
    return providers.annotate(
        health_status=Subquery(latest.values("status")[:1]),
        health_latency_ms=Subquery(latest.values("latency_ms")[:1]),
        health_checked_at=Subquery(latest.values("created_at")[:1]),
    )
