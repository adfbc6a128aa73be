"""Usage: one append-only row per provider call (tokens, cost, latency)."""

from decimal import Decimal

from django.conf import settings
from django.db import models


class UsageRecord(models.Model):
    # Indexed by usage_user_created (user first).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records", db_index=False
    )
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    chat = models.ForeignKey("chats.Chat", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_created"),
            models.Index(fields=["provider", "model", "created_at"], name="usage_model_created"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} for {self.user_id} at {self.created_at:%Y-%m-%d %H:%M}"


class UsageDaily(models.Model):
    """One UTC day of one user's usage of one model, summed from UsageRecord by the nightly rollup."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_daily")
    day = models.DateField()
    provider = models.CharField(max_length=50)
    model = models.CharField(max_length=200)
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal("0"))

    class Meta:
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        ordering = ["-day", "user_id", "provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "provider", "model"], name="usagedaily_unique_per_model"),
        ]
        indexes = [models.Index(fields=["user", "day"], name="usagedaily_user_day")]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} for {self.user_id} on {self.day:%Y-%m-%d}"


class UsageRollup(models.Model):
    """That a UTC day was rolled up into UsageDaily, and when.

    Readers trust a day's UsageDaily rows only when the rollup ran after the day
    ended; a day without usage still gets a row here, so "rolled up, nothing
    used" differs from "not rolled up".
    """

    day = models.DateField(unique=True)
    rows = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"rollup of {self.day:%Y-%m-%d} ({self.rows} rows)"
