"""Per-user usage limits checked before a turn calls any provider: tokens per minute and the monthly budget.

(The request rate is the API's own throttle: ``accounts.throttling``.)
"""

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from accounts.models import User
from platform_site.counters import counter_add, counter_get
from platform_site.exceptions import RateLimited

from .models import UsageRecord

TPM_WINDOW = 60


def _tpm_key(user_id: int, window: int) -> str:
    return f"tpm:{user_id}:{window}"


def limits_check_tokens(*, user: User) -> None:
    if user.tokens_per_minute is None:
        return
    window = int(time.time() // TPM_WINDOW)
    used = counter_get(_tpm_key(user.pk, window))
    if used >= user.tokens_per_minute:
        retry_after = int((window + 1) * TPM_WINDOW - time.time()) + 1
        raise RateLimited(
            f"Token limit reached: {used} of {user.tokens_per_minute} tokens this minute.",
            retry_after=retry_after,
            code="token_limit",
            details={"used": used, "limit": user.tokens_per_minute},
        )


def limits_add_tokens(*, user_id: int, tokens: int) -> None:
    """Count tokens a provider call used; cheap, atomic (cache INCR), shared by all workers with Redis."""
    if tokens <= 0:
        return
    counter_add(_tpm_key(user_id, int(time.time() // TPM_WINDOW)), tokens, ttl=TPM_WINDOW * 2)


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def limits_check_budget(*, user: User) -> None:
    if user.monthly_budget_usd is None:
        return
    now = datetime.now(UTC)
    start = _month_start(now)
    spent = UsageRecord.objects.filter(user=user, created_at__gte=start).aggregate(total=Sum("cost"))["total"]
    spent = spent or Decimal(0)
    if spent >= user.monthly_budget_usd:
        next_month = (start + timedelta(days=32)).replace(day=1)
        raise RateLimited(
            f"Monthly budget of ${user.monthly_budget_usd} reached (spent ${spent:.4f}); it resets on "
            f"{next_month:%Y-%m-%d}.",
            retry_after=int((next_month - now).total_seconds()),
            code="budget_exceeded",
            details={"spent": str(spent), "budget": str(user.monthly_budget_usd), "resets": next_month.isoformat()},
        )
