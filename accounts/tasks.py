"""Celery entry points for accounts."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from .services import api_keys_purge


@shared_task
def purge_expired_api_keys() -> int:
    return api_keys_purge(older_than=timedelta(days=settings.API_KEY_PURGE_AFTER_DAYS))
