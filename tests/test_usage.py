"""GET /api/usage: the caller's totals, grouped by provider, model or day, within since/until."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from usage.models import UsageRecord

from .factories import UsageRecordFactory

pytestmark = pytest.mark.django_db


def _record(user, when: str, **fields):
    record = UsageRecordFactory(user=user, **fields)
    moment = timezone.make_aware(datetime.fromisoformat(when), UTC)
    UsageRecord.objects.filter(pk=record.pk).update(created_at=moment)
    return record


@pytest.fixture
def records(user, other_user):
    _record(
        user,
        "2026-03-01T10:00",
        provider="openai",
        model="gpt-4o",
        input_tokens=100,
        output_tokens=10,
        cost=Decimal("0.5"),
    )
    _record(
        user,
        "2026-03-01T23:59",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=50,
        output_tokens=5,
        cost=Decimal("0.25"),
    )
    _record(
        user,
        "2026-03-02T08:00",
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=10,
        output_tokens=1,
        cached_tokens=7,
        cost=Decimal("0.125"),
    )
    _record(other_user, "2026-03-01T12:00", provider="openai", model="gpt-4o", input_tokens=999_999, cost=Decimal("99"))


def test_totals_are_the_callers_only(api, records):
    body = api.get("/api/usage").json()

    assert body["totals"] == {
        "requests": 3,
        "input_tokens": 160,
        "output_tokens": 16,
        "cached_tokens": 7,
        "reasoning_tokens": 0,
        "cost": "0.87500000",
    }
    assert body["groups"] == []


def test_group_by_provider(api, records):
    groups = api.get("/api/usage?group_by=provider").json()["groups"]

    assert [(g["key"], g["requests"], g["input_tokens"], g["cost"]) for g in groups] == [
        ("anthropic", 1, 10, "0.12500000"),
        ("openai", 2, 150, "0.75000000"),
    ]


def test_group_by_model(api, records):
    groups = api.get("/api/usage?group_by=model").json()["groups"]

    assert [g["key"] for g in groups] == ["anthropic/claude-sonnet-4-5", "openai/gpt-4o", "openai/gpt-4o-mini"]


def test_group_by_day_with_since_and_until(api, records):
    all_days = api.get("/api/usage?group_by=day").json()["groups"]
    first_day = api.get("/api/usage?group_by=day&since=2026-03-01&until=2026-03-02").json()

    assert [(g["key"], g["requests"]) for g in all_days] == [("2026-03-01", 2), ("2026-03-02", 1)]
    assert first_day["totals"]["requests"] == 2
    assert [g["key"] for g in first_day["groups"]] == ["2026-03-01"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("group_by=week", "group_by"), ("since=yesterday", "since"), ("since=2026-03-02&until=2026-03-01", "until")],
)
def test_bad_filters_are_400(api, query, field):
    response = api.get(f"/api/usage?{query}")

    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_any_iso_offset_is_read_in_utc(api, records):
    # -21:07 is valid ISO 8601 but beyond what PostgreSQL takes (±15:59): it is read as the same moment in UTC.
    odd = api.get("/api/usage?since=2026-02-28T02:53:00-21:07").json()
    utc = api.get("/api/usage?since=2026-03-01T00:00:00Z").json()

    assert odd["totals"] == utc["totals"]
    assert odd["totals"]["requests"] == 3


def test_an_offset_past_the_calendar_is_400(api):
    response = api.get("/api/usage?since=0001-01-01T00:00:00%2B23:59")

    assert response.status_code == 400
    assert "since" in response.json()["error"]["details"]
