"""Writes of providers: health snapshots."""

from asgiref.sync import async_to_sync

from .models import Provider, ProviderHealthSnapshot
from .selectors import provider_health


def provider_health_snapshot(*, provider_id: int) -> ProviderHealthSnapshot:
    """Check the provider now (a live call to its models endpoint) and store the result.

    Raises Provider.DoesNotExist for an unknown id. A failing provider is a
    stored "error" snapshot, not an exception.
    """
    provider = Provider.objects.get(pk=provider_id)
    # The adapter and its SDK client belong to the event loop async_to_sync runs here.
    result = async_to_sync(provider_health)(provider=provider)
    return ProviderHealthSnapshot.objects.create(
        provider=provider,
        status=result.status,
        latency_ms=result.latency_ms,
        error=result.error or "",
        code=result.code or "",
    )
