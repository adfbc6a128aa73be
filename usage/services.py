"""Writes of usage: one UsageRecord per provider call, and the daily rollup of them into UsageDaily."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from platform_site.sql import Statement, insert

from .models import UsageDaily, UsageRecord, UsageRollup
from .selectors import TOTALS


def usage_record_create(
    *,
    user_id: int,
    api_key_id: int | None,
    chat_id: int | None,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    reasoning_tokens: int,
    cost: Decimal,
    latency_ms: int,
) -> UsageRecord:
    """Store one provider call's usage (append-only; the caller's transaction, if any, holds it)."""
    return UsageRecord.objects.create(
        user_id=user_id,
        api_key_id=api_key_id,
        chat_id=chat_id,
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=cached_tokens,
        reasoning_tokens=reasoning_tokens,
        cost=cost,
        latency_ms=latency_ms,
    )


def usage_record_statement(**fields: object) -> Statement:
    """The row ``usage_record_create`` stores (same keyword arguments), as a Statement to send with other writes."""
    return insert(UsageRecord, {**fields, "created_at": timezone.now()})


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@transaction.atomic
def usage_rollup_day(*, day: date) -> int:
    """Recompute ``day`` (UTC) from UsageRecord and replace its UsageDaily rows; the number of rows written.

    Re-running is safe and picks up records added since: the day's rows are
    replaced, never added to.
    """
    now = timezone.now()
    # The marker row is upserted first: its row lock makes concurrent rollups of one day take turns.
    marker, _ = UsageRollup.objects.update_or_create(day=day, defaults={"computed_at": now})
    start = utc_midnight(day)
    groups = (
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=start + timedelta(days=1))
        .values("user_id", "provider", "model")
        .annotate(**TOTALS)
        .order_by("user_id", "provider", "model")
    )
    rows = [UsageDaily(day=day, **group) for group in groups]
    UsageDaily.objects.filter(day=day).delete()
    UsageDaily.objects.bulk_create(rows)
    marker.rows = len(rows)
    marker.save(update_fields=["rows"])
    return len(rows)
