"""Usage totals for one user, grouped by provider, model or day."""

from datetime import datetime
from typing import Literal

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import User

from .models import UsageRecord

GroupBy = Literal["provider", "model", "day"]

TOTALS = {
    "requests": Count("id"),
    "input_tokens": Sum("input_tokens", default=0),
    "output_tokens": Sum("output_tokens", default=0),
    "cached_tokens": Sum("cached_tokens", default=0),
    "reasoning_tokens": Sum("reasoning_tokens", default=0),
    "cost": Sum("cost", default=0),
}


def usage_records(*, user: User, since: datetime | None = None, until: datetime | None = None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(user=user)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    return records


def usage_summary(
    *, user: User, group_by: GroupBy | None = None, since: datetime | None = None, until: datetime | None = None
) -> dict[str, object]:
    records = usage_records(user=user, since=since, until=until)
    totals = records.aggregate(**TOTALS)
    groups: list[dict[str, object]] = []
    if group_by == "day":
        rows = records.annotate(day=TruncDate("created_at")).values("day").annotate(**TOTALS).order_by("day")
        groups = [{"key": row.pop("day").isoformat(), **row} for row in rows]
    elif group_by == "provider":
        rows = records.values("provider").annotate(**TOTALS).order_by("provider")
        groups = [{"key": row.pop("provider"), **row} for row in rows]
    elif group_by == "model":
        rows = records.values("provider", "model").annotate(**TOTALS).order_by("provider", "model")
        groups = [{"key": f"{row['provider']}/{row.pop('model')}", **row} for row in rows]
    return {"totals": totals, "group_by": group_by, "groups": groups}
