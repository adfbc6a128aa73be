"""The daily usage rollup: the service, its Celery task (eager and on a real worker), the per-day
summary that reads it, and the admin totals of usage rows."""

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from usage.models import UsageDaily, UsageRecord, UsageRollup
from usage.selectors import usage_summary
from usage.services import usage_rollup_day
from usage.tasks import rollup_usage_day

from .factories import UsageRecordFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
MARCH_1 = date(2026, 3, 1)
DAILY_FIELDS = (
    "user__username",
    "day",
    "provider",
    "model",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost",
)


def _record(user, when: str | datetime, **fields) -> UsageRecord:
    # Token counts are zero unless a test names them (the factory's defaults are not).
    record = UsageRecordFactory(user=user, **{"input_tokens": 0, "output_tokens": 0, **fields})
    moment = when if isinstance(when, datetime) else datetime.fromisoformat(when).replace(tzinfo=UTC)
    UsageRecord.objects.filter(pk=record.pk).update(created_at=moment)
    return record


def _daily_rows() -> list[tuple]:
    return list(UsageDaily.objects.order_by("day", "user__username", "provider", "model").values_list(*DAILY_FIELDS))


@pytest.fixture
def march(user, other_user):
    """Usage on 1 March (UTC) by two users, plus records just outside that day."""
    _record(user, "2026-02-28T23:59:59", provider="openai", model="gpt-4o", input_tokens=1_000, cost=Decimal("9"))
    _record(
        user,
        "2026-03-01T00:00:00",
        provider="openai",
        model="gpt-4o",
        input_tokens=100,
        output_tokens=10,
        cached_tokens=40,
        cost=Decimal("0.5"),
    )
    _record(
        user,
        "2026-03-01T23:59:59.999",
        provider="openai",
        model="gpt-4o",
        input_tokens=20,
        output_tokens=2,
        reasoning_tokens=1,
        cost=Decimal("0.125"),
    )
    _record(
        user,
        "2026-03-01T12:00",
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=7,
        output_tokens=3,
        cost=Decimal("0.25"),
    )
    _record(other_user, "2026-03-01T08:00", provider="openai", model="gpt-4o", input_tokens=5, cost=Decimal("1"))
    _record(user, "2026-03-02T00:00:00", provider="openai", model="gpt-4o", input_tokens=2_000, cost=Decimal("7"))


MARCH_1_ROWS = [
    ("alice", MARCH_1, "anthropic", "claude-sonnet-4-5", 1, 7, 3, 0, 0, Decimal("0.25")),
    ("alice", MARCH_1, "openai", "gpt-4o", 2, 120, 12, 40, 1, Decimal("0.625")),
    ("bob", MARCH_1, "openai", "gpt-4o", 1, 5, 0, 0, 0, Decimal("1")),
]


# --- the service and the task -------------------------------------------------------------------


def test_rollup_sums_one_utc_day_per_user_provider_and_model(march):
    written = usage_rollup_day(day=MARCH_1)

    assert written == 3
    assert _daily_rows() == MARCH_1_ROWS
    marker = UsageRollup.objects.get()
    assert (marker.day, marker.rows) == (MARCH_1, 3)


def test_task_is_idempotent_and_a_rerun_picks_up_new_records(march, user):
    first = rollup_usage_day.apply(args=["2026-03-01"]).get()
    rows_after_first = _daily_rows()
    second = rollup_usage_day.apply(args=["2026-03-01"]).get()

    assert (first, second) == (3, 3)
    assert _daily_rows() == rows_after_first == MARCH_1_ROWS
    assert UsageRollup.objects.count() == 1

    # given a record that arrives for the day after it was rolled up
    _record(user, "2026-03-01T18:00", provider="openai", model="gpt-4o-mini", input_tokens=1, cost=Decimal("0.01"))
    third = rollup_usage_day.apply(args=["2026-03-01"]).get()

    assert third == 4
    assert ("alice", MARCH_1, "openai", "gpt-4o-mini", 1, 1, 0, 0, 0, Decimal("0.01")) in _daily_rows()
    assert UsageRollup.objects.get().rows == 4


def test_task_defaults_to_yesterday_utc(user):
    yesterday = timezone.now().date() - timedelta(days=1)
    _record(user, datetime.combine(yesterday, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23), cost=Decimal("2"))
    _record(user, timezone.now(), cost=Decimal("3"))  # today: not part of it

    written = rollup_usage_day.apply().get()

    assert written == 1
    assert list(UsageDaily.objects.values_list("day", "requests", "cost")) == [(yesterday, 1, Decimal("2"))]


def test_a_day_without_usage_is_still_marked_rolled_up(march):
    written = rollup_usage_day.apply(args=["2026-01-15"]).get()

    assert written == 0
    assert UsageDaily.objects.count() == 0
    assert list(UsageRollup.objects.values_list("day", "rows")) == [(date(2026, 1, 15), 0)]


# --- the per-day summary reads the rollup ---------------------------------------------------------


def _days(api, query: str = "") -> dict:
    response = api.get(f"/api/usage?group_by=day{query}")
    assert response.status_code == 200
    return response.json()


def test_rolled_up_day_still_shows_after_its_raw_records_are_deleted(api, march):
    usage_rollup_day(day=MARCH_1)
    UsageRecord.objects.filter(created_at__date=MARCH_1).delete()

    body = _days(api)

    assert [(g["key"], g["requests"], g["input_tokens"], g["cost"]) for g in body["groups"]] == [
        ("2026-02-28", 1, 1_000, "9.00000000"),
        ("2026-03-01", 3, 127, "0.87500000"),
        ("2026-03-02", 1, 2_000, "7.00000000"),
    ]
    assert body["totals"] == {
        "requests": 5,
        "input_tokens": 3_127,
        "output_tokens": 15,
        "cached_tokens": 40,
        "reasoning_tokens": 1,
        "cost": "16.87500000",
    }


def test_summary_follows_the_rollup_until_it_is_rerun(api, march, user):
    usage_rollup_day(day=MARCH_1)
    _record(user, "2026-03-01T20:00", provider="openai", model="gpt-4o", input_tokens=3, cost=Decimal("0.5"))

    before = _days(api, "&since=2026-03-01&until=2026-03-02")["groups"]
    usage_rollup_day(day=MARCH_1)
    after = _days(api, "&since=2026-03-01&until=2026-03-02")["groups"]

    assert [(g["key"], g["requests"], g["cost"]) for g in before] == [("2026-03-01", 3, "0.87500000")]
    assert [(g["key"], g["requests"], g["cost"]) for g in after] == [("2026-03-01", 4, "1.37500000")]


def test_a_day_not_rolled_up_comes_from_live_records(api, user):
    today = timezone.now().date()
    yesterday = today - timedelta(days=1)
    _record(user, datetime.combine(yesterday, datetime.min.time(), tzinfo=UTC), cost=Decimal("1"))
    _record(user, timezone.now(), cost=Decimal("2"))
    usage_rollup_day(day=yesterday)
    # A rollup of today, taken while today is still open, is only a partial picture: it is not used.
    usage_rollup_day(day=today)
    _record(user, timezone.now(), cost=Decimal("4"))

    groups = _days(api)["groups"]

    assert [(g["key"], g["requests"], g["cost"]) for g in groups] == [
        (yesterday.isoformat(), 1, "1.00000000"),
        (today.isoformat(), 2, "6.00000000"),
    ]


def test_a_day_between_rolled_up_days_comes_from_live_records(api, march, user):
    usage_rollup_day(day=date(2026, 2, 28))
    usage_rollup_day(day=date(2026, 3, 2))
    # late records: the rolled-up day must not see its own, the live day must
    _record(user, "2026-02-28T22:00", provider="openai", model="gpt-4o", input_tokens=1, cost=Decimal("5"))
    _record(user, "2026-03-01T09:00", provider="openai", model="gpt-4o", input_tokens=1, cost=Decimal("0.125"))

    groups = _days(api)["groups"]

    assert [(g["key"], g["requests"], g["cost"]) for g in groups] == [
        ("2026-02-28", 1, "9.00000000"),
        ("2026-03-01", 4, "1.00000000"),
        ("2026-03-02", 1, "7.00000000"),
    ]


def test_a_partly_covered_day_is_summed_from_records_not_the_rollup(api, march):
    usage_rollup_day(day=MARCH_1)
    UsageRecord.objects.filter(provider="anthropic").delete()  # the rollup still holds it

    groups = _days(api, "&since=2026-03-01T06:00&until=2026-03-02")["groups"]

    # 06:00 onwards: only the 23:59:59.999 gpt-4o record (the anthropic one is gone from the records)
    assert [(g["key"], g["requests"], g["input_tokens"]) for g in groups] == [("2026-03-01", 1, 20)]


def test_summary_by_day_costs_three_queries(user, march, django_assert_num_queries):
    usage_rollup_day(day=MARCH_1)
    usage_rollup_day(day=date(2026, 3, 2))

    with django_assert_num_queries(3):  # rollup markers, UsageDaily, live records
        summary = usage_summary(user=user, group_by="day")

    assert [(g["key"], g["requests"]) for g in summary["groups"]] == [
        ("2026-02-28", 1),
        ("2026-03-01", 3),
        ("2026-03-02", 1),
    ]


# --- admin totals ---------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_usage_record_changelist_shows_totals_of_the_filtered_rows(admin_client, march, user):
    url = reverse("admin:usage_usagerecord_changelist")

    everything = admin_client.get(url).content.decode()
    alice_openai = admin_client.get(url, {"user__id__exact": user.pk, "provider": "openai"}).content.decode()
    march_1 = admin_client.get(url, {"created_at__year": 2026, "created_at__month": 3, "created_at__day": 1})

    assert "Total cost: 17.87500000 USD" in everything
    assert "Total tokens: 3147 (" in everything
    assert "Total cost: 16.62500000 USD" in alice_openai
    assert "Total tokens: 3132 (" in alice_openai
    assert "Total cost: 1.87500000 USD" in march_1.content.decode()
    assert "Requests: 4<" in march_1.content.decode()


def test_usage_daily_changelist_is_read_only_with_totals(admin_client, march):
    usage_rollup_day(day=MARCH_1)
    url = reverse("admin:usage_usagedaily_changelist")

    page = admin_client.get(url).content.decode()
    openai = admin_client.get(url, {"provider": "openai", "day__year": 2026, "day__month": 3}).content.decode()
    add = admin_client.get(reverse("admin:usage_usagedaily_add"))

    assert "Total cost: 1.87500000 USD" in page
    assert "Total tokens: 147 (" in page
    assert "Total cost: 1.62500000 USD" in openai
    assert "Requests: 3<" in openai
    assert add.status_code == 403


# --- a real worker, a real broker ---------------------------------------------------------------------


def _database_url(db: dict) -> str:
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "localhost"
    port = db.get("PORT") or 5432
    return f"postgres://{quote(db['USER'], safe='')}{password}@{host}:{port}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_rollup_runs_on_a_celery_worker_through_redis(user, tmp_path):
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set: no broker to send through")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database it can share with the test: PostgreSQL")
    import redis

    _record(user, "2026-03-01T10:00", provider="openai", model="gpt-4o", input_tokens=100, cost=Decimal("0.5"))
    _record(user, "2026-03-01T11:00", provider="openai", model="gpt-4o", input_tokens=50, cost=Decimal("0.25"))
    # A queue of its own, so no other worker on the same Redis (another test run) takes the task.
    queue = f"test-rollup-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": _database_url(connection.settings_dict), "REDIS_URL": settings.REDIS_URL}
    command = [sys.executable, "-m", "celery", "-A", "platform_site", "worker", "--pool=solo", "--concurrency=1"]
    command += ["-l", "warning", "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle"]
    with log.open("wb") as output:
        worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        rollup_usage_day.apply_async(args=["2026-03-01"], queue=queue)

        deadline = time.monotonic() + 30
        while not UsageDaily.objects.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no UsageDaily rows from the worker (exit {worker.poll()}):\n{log.read_text()}")
            time.sleep(0.2)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        redis.Redis.from_url(settings.REDIS_URL).delete(f"_kombu.binding.{queue}", queue)

    assert _daily_rows() == [("alice", MARCH_1, "openai", "gpt-4o", 2, 150, 0, 0, 0, Decimal("0.75"))]
    assert list(UsageRollup.objects.values_list("day", "rows")) == [(MARCH_1, 1)]
