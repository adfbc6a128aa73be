from typing import Any, cast

from django import forms
from django.contrib import admin
from django.db.models import BLANK_CHOICE_DASH, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from .models import Provider, ProviderHealthSnapshot, ProviderModel
from .registry import provider_kind_choices, provider_problem
from .selectors import providers_with_latest_health


class ProviderModelInline(admin.TabularInline):
    model = ProviderModel
    extra = 0
    fields = (
        "model_id",
        "display_name",
        "context_window",
        "enabled",
        "input_price_per_mtok",
        "output_price_per_mtok",
        "cached_input_price_per_mtok",
    )


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = ("name", "kind", "display_name", "base_url", "api_key_env", "enabled")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = cast(forms.ChoiceField, self.fields["kind"])
        # The model's message names the setting that declares kinds; the form's own would only say "invalid".
        field.error_messages["invalid_choice"] = Provider._meta.get_field("kind").error_messages["invalid_choice"]
        kind = self.instance.kind if self.instance.pk else None
        known = provider_kind_choices()
        if kind and kind not in dict(known):
            # Shown as it is, so the page says what is wrong instead of quietly selecting another kind;
            # saving it is refused (by the model's validation) until a registered kind is picked.
            field.choices = [*BLANK_CHOICE_DASH, *known, (kind, f"{kind} (no adapter: pick a registered kind)")]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm

    class Media:
        css = {"all": ["platform_site/admin-status.css"]}

    list_display = (
        "name",
        "display_name",
        "kind_display",
        "base_url",
        "api_key_env",
        "enabled",
        "configuration",
        "latest_health",
        "updated_at",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "display_name", "base_url")
    inlines = (ProviderModelInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        # The latest snapshot rides along as subqueries of the list query: no query per row.
        return providers_with_latest_health(providers=super().get_queryset(request))

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj: Provider) -> str:
        return obj.kind_label

    @admin.display(description="configuration")
    def configuration(self, obj: Provider) -> str:
        problem = provider_problem(obj)
        if problem is None:
            return format_html('<b class="status-ok">{}</b>', "ok")
        return format_html('<b class="status-error">not configured</b>: {}', problem)

    @admin.display(description="health (latest snapshot)")
    def latest_health(self, obj: Provider) -> str:
        status = getattr(obj, "health_status", None)
        if status is None:
            return "—"
        latency = obj.health_latency_ms  # type: ignore[attr-defined]
        checked_at = obj.health_checked_at  # type: ignore[attr-defined]
        return format_html(
            '<b class="status-{}">{}</b> {} <small>({})</small>',
            status,
            status,
            f"{latency:.0f} ms" if latency is not None else "",
            f"{checked_at:%Y-%m-%d %H:%M} UTC",
        )


@admin.register(ProviderModel)
class ProviderModelAdmin(admin.ModelAdmin):
    list_display = (
        "model_id",
        "provider",
        "display_name",
        "context_window",
        "enabled",
        "input_price_per_mtok",
        "output_price_per_mtok",
    )
    list_filter = ("provider", "enabled")
    search_fields = ("model_id", "display_name")
    list_select_related = ("provider",)


@admin.register(ProviderHealthSnapshot)
class ProviderHealthSnapshotAdmin(admin.ModelAdmin):
    list_display = ("created_at", "provider", "status", "latency_ms", "code", "short_error")
    list_filter = ("status", "provider", "code")
    list_select_related = ("provider",)
    date_hierarchy = "created_at"

    # Written only by the periodic health check.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ProviderHealthSnapshot | None = None) -> bool:
        return False

    @admin.display(description="error")
    def short_error(self, obj: ProviderHealthSnapshot) -> str:
        return obj.error[:200]
