"""LLM providers and the models an admin has enabled on them.

A row names the env var holding its key, never the key; base URL and key are
read from the environment when a client is built, not frozen into rows. The
valid kinds are those of the adapters in ``settings.PROVIDER_ADAPTERS``, so a
new kind needs no migration; a row whose kind lost its adapter stays readable
and is shown as not configured.
"""

from django.core.exceptions import ValidationError
from django.db import models

from .registry import adapter_class_or_none, provider_kind_choices
from .validators import validate_http_url


def kind_choices() -> list[tuple[str, str]]:
    # Read when choices are needed (admin forms, validation), so the setting can change without a migration.
    return provider_kind_choices()


class Provider(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    kind = models.CharField(
        max_length=50,
        choices=kind_choices,
        error_messages={
            "invalid_choice": "Unknown provider kind %(value)r: no adapter in settings.PROVIDER_ADAPTERS declares it."
        },
    )
    display_name = models.CharField(max_length=100)
    base_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_http_url],
        help_text="Blank: the <KIND>_BASE_URL env var, else the SDK default. Required for OpenAI-compatible servers.",
    )
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable that holds the API key."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name

    def clean(self) -> None:
        adapter = adapter_class_or_none(self.kind)
        if adapter is not None and adapter.requires_base_url and not self.base_url:
            raise ValidationError(
                {"base_url": f"A provider of kind {self.kind!r} needs its server's base URL, e.g. http://vllm:8000/v1."}
            )

    @property
    def kind_label(self) -> str:
        adapter = adapter_class_or_none(self.kind)
        return adapter.label if adapter is not None else f"{self.kind} (no adapter: not configured)"


class ProviderModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200)
    display_name = models.CharField(max_length=200, blank=True)
    context_window = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    input_price_per_mtok = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="USD per million input tokens; overrides."
    )
    output_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cached_input_price_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        ordering = ["provider__name", "model_id"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model_id"], name="providermodel_unique_per_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.provider.name}/{self.model_id}"

    @property
    def has_price_override(self) -> bool:
        return self.input_price_per_mtok is not None or self.output_price_per_mtok is not None


class HealthStatus(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"


class ProviderHealthSnapshot(models.Model):
    """One periodic health check of a provider: append-only, so the admin can show a history."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="health_snapshots")
    status = models.CharField(max_length=10, choices=HealthStatus.choices)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    code = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["provider", "-created_at"], name="providerhealth_latest")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=HealthStatus.values), name="providerhealthsnapshot_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} {self.status} at {self.created_at:%Y-%m-%d %H:%M}"
