"""Reads of providers: rows, their live model lists merged with admin rows, and health."""

from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery

from platform_site.exceptions import NotFound

from .errors import ProviderError
from .models import Provider, ProviderHealthSnapshot, ProviderModel
from .pricing import list_prices
from .registry import adapter_for, provider_is_configured
from .types import HealthResult, ModelInfo


def provider_list() -> list[Provider]:
    return list(Provider.objects.all())


def provider_get(*, name: str) -> Provider:
    provider = Provider.objects.filter(name=name).first()
    if provider is None:
        raise NotFound(f"Unknown provider {name!r}.", code="unknown_provider")
    return provider


async def aprovider_get(*, name: str) -> Provider:
    provider = await Provider.objects.filter(name=name).afirst()
    if provider is None:
        raise NotFound(f"Unknown provider {name!r}.", code="unknown_provider")
    return provider


@dataclass(frozen=True)
class ModelListing:
    provider: Provider
    models: list[ModelInfo]
    live: bool
    error: str | None


async def provider_models(*, provider: Provider) -> ModelListing:
    """The provider's own list (cached per process) merged with admin rows; disabled rows hide a model."""
    rows = {row.model_id: row async for row in ProviderModel.objects.filter(provider=provider)}
    live: list[ModelInfo] = []
    error = None
    if provider_is_configured(provider):
        try:
            live = await adapter_for(provider).list_models()
        except ProviderError as exc:
            error = exc.message
    else:
        error = "Not configured: no API key in the environment."

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
        row = rows.get(model_id)
        if row is not None and row.has_price_override:
            prices = (row.input_price_per_mtok, row.output_price_per_mtok, row.cached_input_price_per_mtok)
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
