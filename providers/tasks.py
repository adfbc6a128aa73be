"""Celery entry points for providers: periodic health snapshots."""

from celery import shared_task
from django.db import OperationalError

from .models import Provider
from .selectors import provider_ids_enabled
from .services import provider_health_snapshot


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def snapshot_provider_health(provider_id: int) -> int | None:
    """Store one health snapshot of the provider; the snapshot's id, or None if the provider is gone."""
    try:
        return provider_health_snapshot(provider_id=provider_id).pk
    except Provider.DoesNotExist:
        return None  # deleted since the fan-out: nothing to check, nothing to retry


@shared_task
def snapshot_all_provider_health() -> list[int]:
    """Fan out one snapshot task per enabled provider, so one slow provider delays no other."""
    provider_ids = provider_ids_enabled()
    for provider_id in provider_ids:
        snapshot_provider_health.delay(provider_id)
    return provider_ids
