"""Shared fixtures: users, API clients authenticated by key, and a clean shared cache per test."""

import pytest
from django.core.cache import cache
from django.test.utils import override_settings
from rest_framework.test import APIClient

from accounts.services import api_key_create

from .factories import UserFactory


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hashing():
    # PBKDF2 at production strength costs ~0.4 s per user created; tests need no such strength.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _clean_cache():
    # The cache is Redis in CI and holds rate-limit counters: start each test at zero.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


def client_for(user) -> APIClient:
    client = APIClient()
    issued = api_key_create(owner=user, name="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)
