"""Celery entry points for MCP servers: periodic health snapshots."""

from celery import shared_task
from django.db import OperationalError

from .services import mcp_health_snapshot


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def snapshot_mcp_health() -> int:
    """Store one snapshot per configured MCP server; the number stored."""
    return len(mcp_health_snapshot())
