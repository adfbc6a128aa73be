"""Celery entry points for usage."""

from datetime import date, timedelta

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from .services import usage_rollup_day


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def rollup_usage_day(day: str | None = None) -> int:
    """Roll up one UTC day (an ISO date; yesterday by default). Re-running replaces the day's rows."""
    target = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    return usage_rollup_day(day=target)
