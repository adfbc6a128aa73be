from django.urls import path

from . import apis

urlpatterns = [
    path("providers", apis.ProviderListApi.as_view(), name="providers"),
    path("providers/<slug:name>/models", apis.ProviderModelsApi.as_view(), name="provider-models"),
    path("providers/<slug:name>/health", apis.ProviderHealthApi.as_view(), name="provider-health"),
]
