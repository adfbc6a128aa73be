"""The Celery app; it reads CELERY_* from Django settings and finds each app's tasks.py."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")

app = Celery("platform_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _connect_mcp_servers(**_kwargs: object) -> None:
    # Each worker process has its own MCP host: connect its servers as the process starts.
    from mcp_servers.host import host_start_at_boot

    host_start_at_boot()
