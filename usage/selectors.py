"""Usage totals for one user, grouped by provider, model or day.

Per-day figures come from UsageDaily for days whose rollup ran after the day
ended, and from live UsageRecord aggregation for every other day (today, or a
day the rollup has not reached yet).
"""

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from typing import Any, Literal

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from accounts.models import User

from .models import UsageDaily, UsageRecord, UsageRollup

GroupBy = Literal["provider", "model", "day"]

TOTALS = {
    "requests": Count("id"),
    "input_tokens": Sum("input_tokens", default=0),
    "output_tokens": Sum("output_tokens", default=0),
    "cached_tokens": Sum("cached_tokens", default=0),
    "reasoning_tokens": Sum("reasoning_tokens", default=0),
    "cost": Sum("cost", default=0),
}

# The same totals over UsageDaily rows, whose requests are already counted.
DAILY_TOTALS = {"requests": Sum("requests", default=0), **{name: TOTALS[name] for name in TOTALS if name != "requests"}}


def _rows(values: QuerySet[Any, Any]) -> Iterator[dict[str, Any]]:
    """The rows of ``values(...).annotate(**TOTALS)``: django-stubs types them with the ``values()`` keys alone."""
    return iter(values)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def usage_records(*, user: User, since: datetime | None = None, until: datetime | None = None) -> QuerySet[UsageRecord]:
    records = UsageRecord.objects.filter(user=user)
    if since is not None:
        records = records.filter(created_at__gte=since)
    if until is not None:
        records = records.filter(created_at__lt=until)
    return records


def usage_record_totals(*, records: QuerySet[UsageRecord]) -> dict[str, object]:
    """Totals of any set of records (the admin's filtered changelist, a user's period)."""
    return records.aggregate(**TOTALS)


def usage_daily_totals(*, rows: QuerySet[UsageDaily]) -> dict[str, object]:
    return rows.aggregate(**DAILY_TOTALS)


def usage_rolled_up_days(*, since: datetime | None = None, until: datetime | None = None) -> list[date]:
    """Days wholly inside [since, until) whose rollup ran after the day had ended, oldest first."""
    markers = UsageRollup.objects.all()
    if since is not None:
        since = since.astimezone(UTC)
        first = since.date() if since == _midnight(since.date()) else since.date() + timedelta(days=1)
        markers = markers.filter(day__gte=first)
    if until is not None:
        markers = markers.filter(day__lt=until.astimezone(UTC).date())
    return [
        day
        for day, computed_at in markers.order_by("day").values_list("day", "computed_at")
        if computed_at >= _midnight(day + timedelta(days=1))
    ]


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as runs of consecutive days, each [first, end)."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] == day:
            runs[-1] = (runs[-1][0], day + timedelta(days=1))
        else:
            runs.append((day, day + timedelta(days=1)))
    return runs


def _outside(days: list[date]) -> Q:
    """Records created on none of ``days`` (sorted, not empty): one created_at range per gap, so indexes apply."""
    gaps: list[Q] = []
    start: datetime | None = None
    for first, end in _runs(days):
        gap = Q(created_at__lt=_midnight(first))
        gaps.append(gap if start is None else gap & Q(created_at__gte=start))
        start = _midnight(end)
    gaps.append(Q(created_at__gte=start))
    return reduce(or_, gaps)


def _usage_by_day(*, user: User, since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    rolled_up = usage_rolled_up_days(since=since, until=until)
    by_day: dict[date, dict[str, Any]] = {}
    if rolled_up:
        daily = UsageDaily.objects.filter(user=user, day__in=rolled_up)
        for row in _rows(daily.values("day").annotate(**DAILY_TOTALS).order_by("day")):
            by_day[row.pop("day")] = row
    live = usage_records(user=user, since=since, until=until)
    if rolled_up:
        live = live.filter(_outside(rolled_up))
    by_live_day = live.annotate(day=TruncDate("created_at", tzinfo=UTC)).values("day").annotate(**TOTALS)
    for row in _rows(by_live_day.order_by("day")):
        by_day[row.pop("day")] = row
    return [{"key": day.isoformat(), **by_day[day]} for day in sorted(by_day)]


def usage_summary(
    *, user: User, group_by: GroupBy | None = None, since: datetime | None = None, until: datetime | None = None
) -> dict[str, object]:
    if group_by == "day":
        groups = _usage_by_day(user=user, since=since, until=until)
        # Totals from the same rows, so they agree with the groups even where raw records are gone.
        totals: dict[str, Any] = dict.fromkeys(TOTALS, 0) | {"cost": Decimal("0")}
        for group in groups:
            for field in TOTALS:
                totals[field] += group[field]
        return {"totals": totals, "group_by": group_by, "groups": groups}

    records = usage_records(user=user, since=since, until=until)
    totals = usage_record_totals(records=records)
    groups = []
    if group_by == "provider":
        rows = records.values("provider").annotate(**TOTALS).order_by("provider")
        groups = [{"key": row.pop("provider"), **row} for row in _rows(rows)]
    elif group_by == "model":
        rows = records.values("provider", "model").annotate(**TOTALS).order_by("provider", "model")
        groups = [{"key": f"{row['provider']}/{row.pop('model')}", **row} for row in _rows(rows)]
    return {"totals": totals, "group_by": group_by, "groups": groups}
