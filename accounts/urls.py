from django.urls import path

from . import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="me"),
    path("keys", apis.ApiKeyListCreateApi.as_view(), name="keys"),
    path("keys/<int:key_id>", apis.ApiKeyRevokeApi.as_view(), name="key-detail"),
]
