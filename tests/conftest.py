"""Shared fixtures: users, API clients authenticated by key, and a clean shared cache per test."""

import pytest
from asgiref.sync import SyncToAsync
from django.core.cache import cache
from django.db import connections
from django.test.utils import override_settings
from rest_framework.test import APIClient

from accounts.services import api_key_create

from .factories import UserFactory


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    yield
    # Async code reaches the database from worker threads; their pooled PostgreSQL connections
    # must be closed before the test database can be dropped.
    with django_db_blocker.unblock():
        # asgiref runs async tests' ORM calls in its own thread: close the connections held there too.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()


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
