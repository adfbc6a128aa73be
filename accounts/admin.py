"""Admin for users and API keys. A new key's secret is shown once, as a message."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .forms import ThrottledAdminAuthenticationForm
from .models import ApiKey, User
from .services import api_key_generate, api_key_revoke

# The admin's sign-in counts failures with the login page's (a staff account is the better prize).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    fieldsets = (
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]  # Optional in django-stubs; set on UserAdmin
        ("Limits", {"fields": ("rate_limit_per_minute", "tokens_per_minute", "monthly_budget_usd")}),
    )
    list_display = ("username", "email", "is_staff", "is_active", "rate_limit_per_minute", "date_joined", "last_login")


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "prefix", "active", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = (ActiveFilter, "created_at")
    search_fields = ("name", "prefix", "owner__username", "owner__email")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    actions = ("revoke_keys",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("owner", "name", "expires_at")
        return ("owner", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("owner", "prefix", "created_at", "last_used_at", "revoked_at")

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        generated = api_key_generate()
        obj.prefix, obj.key_hash = generated.prefix, generated.key_hash
        super().save_model(request, obj, form, change)
        messages.warning(request, f"Copy the new API key now; it will not be shown again: {generated.raw}")

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            count += 1
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
