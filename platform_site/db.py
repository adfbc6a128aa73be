"""The one way async code reaches the ORM: ``await run_db(fn, *args, **kwargs)``.

``fn`` runs in a small thread pool of this process's own, and the thread's
database connection is handed back (to psycopg's pool) as soon as ``fn``
returns. So no coroutine holds a connection while it waits on a provider, a
tool or another connection, and the number of connections in use is bounded by
the pool's threads (``DATABASE_THREADS``), whatever the number of requests in
flight: the pool can be as small as 2 and never deadlock.

Django's own async ORM (``aget``, ``async for``) is not used: it runs in the
request's thread-sensitive executor and keeps that thread's connection open
until the request ends, which is what deadlocked the pool under load.

Tests whose data lives inside the test's own transaction (plain
``django_db``) call ``run_db_in_caller_thread(True)``: the work then runs on
the thread that drives the event loop through ``async_to_sync``, inside that
transaction.
"""

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_caller_thread = False


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=settings.DATABASE_THREADS, thread_name_prefix="db")
    return _executor


def _call_and_release[T](fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        for connection in connections.all(initialized_only=True):
            if getattr(connection, "pool", None) is not None:
                connection.close()  # back to psycopg's pool
            else:
                connection.close_if_unusable_or_obsolete()  # persistent per thread (CONN_MAX_AGE)


async def run_db[T](fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` (ORM work, sync) off the event loop and return its result."""
    if _caller_thread:
        return await sync_to_async(fn)(*args, **kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(_call_and_release, fn, args, kwargs))


def run_db_in_caller_thread(enabled: bool) -> None:
    """Tests only: run ORM work on the ``async_to_sync`` caller's thread (inside its transaction)."""
    global _caller_thread
    _caller_thread = enabled


def close_db_threads() -> None:
    """Close the connections the pool's threads may still hold, and the threads (tests, shutdown)."""
    global _executor
    with _executor_lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True)
