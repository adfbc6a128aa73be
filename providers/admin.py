from django.contrib import admin

from .models import Provider, ProviderModel


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


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ("name", "display_name", "kind", "base_url", "api_key_env", "enabled", "updated_at")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "display_name", "base_url")
    inlines = (ProviderModelInline,)


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
