"""Periodic tasks."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ApiKey
from accounts.services import api_key_create
from accounts.tasks import purge_expired_api_keys

pytestmark = pytest.mark.django_db


def test_purge_deletes_only_long_dead_keys(user, settings):
    settings.API_KEY_PURGE_AFTER_DAYS = 30
    now = timezone.now()
    active = api_key_create(owner=user, name="active").api_key
    recently_revoked = api_key_create(owner=user, name="recently revoked").api_key
    old_revoked = api_key_create(owner=user, name="old revoked").api_key
    old_expired = api_key_create(owner=user, name="old expired").api_key
    ApiKey.objects.filter(pk=recently_revoked.pk).update(revoked_at=now - timedelta(days=1))
    ApiKey.objects.filter(pk=old_revoked.pk).update(revoked_at=now - timedelta(days=31))
    ApiKey.objects.filter(pk=old_expired.pk).update(expires_at=now - timedelta(days=40))

    deleted = purge_expired_api_keys.apply().get()

    assert deleted == 2
    assert set(ApiKey.objects.values_list("name", flat=True)) == {active.name, recently_revoked.name}
    # idempotent: a second run finds nothing more
    assert purge_expired_api_keys.apply().get() == 0
