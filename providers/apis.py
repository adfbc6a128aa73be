"""REST views of providers: the list, each one's models, and a live health check.

Model lists and health checks talk to the provider over the network, so those
views are async (platform_site.async_views): no worker thread waits on a provider.
"""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from platform_site.async_views import AsyncApiView as AsyncAPIView

from .models import Provider
from .registry import adapter_class_or_none, provider_base_url, provider_problem, provider_state, public_url
from .selectors import aprovider_get, provider_health, provider_list, provider_models
from .types import Capabilities

NO_CAPABILITIES = Capabilities(tools=False, streaming=False, thinking=False, vision=False)


class CapabilitiesSerializer(serializers.Serializer):
    tools = serializers.BooleanField()
    streaming = serializers.BooleanField()
    thinking = serializers.BooleanField()
    vision = serializers.BooleanField()

    class Meta:
        ref_name = "ProviderCapabilities"


class ProviderOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    display_name = serializers.CharField()
    enabled = serializers.BooleanField()
    configured = serializers.SerializerMethodField(
        help_text="Whether its configuration is complete (kind, base URL, key); `status` also says if it answers."
    )
    status = serializers.SerializerMethodField(
        help_text=(
            "`ready`: can be offered; `no_key`: its API key is not in the environment; `not_configured`: its kind "
            "or base URL is missing; `unreachable`: a provider that needs no key (Ollama, a local server) whose "
            "server does not accept connections (probed with a short timeout, at most every CONFIG_CACHE_SECONDS)."
        )
    )
    problem = serializers.SerializerMethodField(help_text="Why the provider is not ready, as a sentence to show.")
    base_url = serializers.SerializerMethodField()
    capabilities = serializers.SerializerMethodField()

    class Meta:
        ref_name = "Provider"

    def get_configured(self, provider: Provider) -> bool:
        return provider_problem(provider) is None

    @extend_schema_field(serializers.ChoiceField(choices=["ready", "no_key", "not_configured", "unreachable"]))
    def get_status(self, provider: Provider) -> str:
        return provider_state(provider).status

    def get_problem(self, provider: Provider) -> str | None:
        return provider_state(provider).reason

    def get_base_url(self, provider: Provider) -> str | None:
        return public_url(provider_base_url(provider))

    @extend_schema_field(CapabilitiesSerializer)
    def get_capabilities(self, provider: Provider) -> dict:
        adapter = adapter_class_or_none(provider.kind)
        # A kind without an adapter can do nothing until it is fixed in admin.
        capabilities = adapter.capabilities if adapter is not None else NO_CAPABILITIES
        return capabilities.model_dump()


class ProviderListApi(APIView):
    @extend_schema(responses=ProviderOutputSerializer(many=True), operation_id="providers_list")
    def get(self, request: Request) -> Response:
        return Response(ProviderOutputSerializer(provider_list(), many=True).data)


class ModelOutputSerializer(serializers.Serializer):
    id = serializers.CharField()
    display_name = serializers.CharField()
    context_window = serializers.IntegerField(allow_null=True)
    input_price_per_mtok = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    output_price_per_mtok = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)
    cached_input_price_per_mtok = serializers.DecimalField(max_digits=14, decimal_places=6, allow_null=True)

    class Meta:
        ref_name = "ProviderModelInfo"


class ProviderModelsApi(AsyncAPIView):
    class OutputSerializer(serializers.Serializer):
        provider = serializers.CharField(source="provider.name")
        live = serializers.BooleanField(help_text="Whether the provider's own model list was reached.")
        error = serializers.CharField(allow_null=True)
        models = ModelOutputSerializer(many=True)

        class Meta:
            ref_name = "ProviderModels"

    @extend_schema(responses=OutputSerializer, operation_id="providers_models_list")
    async def get(self, request: Request, name: str) -> Response:
        provider = await aprovider_get(name=name)
        listing = await provider_models(provider=provider)
        return Response(self.OutputSerializer(listing).data)


class ProviderHealthApi(AsyncAPIView):
    class OutputSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["ok", "error"])
        latency_ms = serializers.FloatField(allow_null=True)
        error = serializers.CharField(allow_null=True)
        code = serializers.CharField(allow_null=True)

        class Meta:
            ref_name = "ProviderHealth"

    @extend_schema(responses=OutputSerializer, operation_id="providers_health_retrieve")
    async def get(self, request: Request, name: str) -> Response:
        provider = await aprovider_get(name=name)
        result = await provider_health(provider=provider)
        return Response(self.OutputSerializer(result.model_dump()).data)
