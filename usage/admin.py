"""Admin for usage: raw records and daily rollups, both read-only, each changelist showing the totals of
the rows its filters select (all pages, not just the one shown)."""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from .models import UsageDaily, UsageRecord
from .selectors import usage_daily_totals, usage_record_totals

TOTALS_TEMPLATE = "admin/usage/usagerecord/change_list.html"
USAGE_FILTERS = (("user", admin.RelatedOnlyFieldListFilter), "provider", "model")


def _with_totals(response: HttpResponse, totals_of: Callable[[QuerySet[Any]], dict[str, Any]]) -> HttpResponse:
    # A redirect (e.g. a bad filter) or an error page has no changelist to total.
    if isinstance(response, TemplateResponse) and response.context_data is not None and "cl" in response.context_data:
        totals = totals_of(response.context_data["cl"].queryset)
        totals["tokens"] = totals["input_tokens"] + totals["output_tokens"]
        response.context_data["usage_totals"] = totals
    return response


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "user",
        "provider",
        "model",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cost",
        "latency_ms",
    )
    list_filter = USAGE_FILTERS
    search_fields = ("user__username", "provider", "model")
    list_select_related = ("user",)
    raw_id_fields = ("user", "api_key", "chat")
    date_hierarchy = "created_at"
    change_list_template = TOTALS_TEMPLATE

    def has_change_permission(self, request: HttpRequest, obj: UsageRecord | None = None) -> bool:
        return False  # append-only

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        return _with_totals(response, lambda records: usage_record_totals(records=records))


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = (
        "day",
        "user",
        "provider",
        "model",
        "requests",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost",
    )
    list_filter = USAGE_FILTERS
    search_fields = ("user__username", "provider", "model")
    list_select_related = ("user",)
    date_hierarchy = "day"
    change_list_template = TOTALS_TEMPLATE

    # Written only by the rollup, which replaces a day's rows whenever it runs.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: UsageDaily | None = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        return _with_totals(response, lambda rows: usage_daily_totals(rows=rows))
