"""From a Provider row to a ready adapter: the registered kinds, configuration from the environment, clients reused.

The kinds are the adapter classes listed in ``settings.PROVIDER_ADAPTERS``; everything else about a kind
(label, default base URL, fallback key variables, price source, schema dialect) is read from its class, so
no table here is keyed by kind. Base URL and key are read when the adapter is built, never frozen into rows.
An adapter (and its SDK client with its connection pool) is created once per event loop and configuration,
then reused: SDK async clients belong to the loop that made them. ``provider_state`` says whether a row can
be offered now (ready, no key, not configured, or a keyless server that refuses connections).
"""

import functools
import os
import socket
import threading
import time
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from platform_site.exceptions import ValidationFailed

from .base import ProviderAdapter, ProviderConfig

if TYPE_CHECKING:
    from .models import Provider

_adapters: "weakref.WeakKeyDictionary[AbstractEventLoop, dict[ProviderConfig, ProviderAdapter]]" = (
    weakref.WeakKeyDictionary()
)


class ProviderKindUnknown(ValidationFailed):
    """A row whose kind no registered adapter provides: a configuration problem, shown, never a crash."""

    code = "provider_not_configured"

    def __init__(self, kind: str) -> None:
        super().__init__(
            f"Provider kind {kind!r} has no adapter: add its class to settings.PROVIDER_ADAPTERS, "
            "or change the provider's kind."
        )
        self.kind = kind


@functools.cache
def _adapter_classes(paths: tuple[str, ...]) -> Mapping[str, type[ProviderAdapter]]:
    # Cached per list of paths: import_string re-enters the import system on every call, which shows on the
    # turn's hot path, and a test that overrides the setting gets its own registry.
    classes: dict[str, type[ProviderAdapter]] = {}
    for path in paths:
        cls = import_string(path)
        if not (isinstance(cls, type) and issubclass(cls, ProviderAdapter)):
            raise ImproperlyConfigured(f"PROVIDER_ADAPTERS: {path} is not a ProviderAdapter subclass.")
        kind = getattr(cls, "kind", None)
        if not isinstance(kind, str) or not kind or not isinstance(getattr(cls, "label", None), str):
            raise ImproperlyConfigured(f"PROVIDER_ADAPTERS: {path} must declare its kind and label.")
        if kind in classes:
            raise ImproperlyConfigured(
                f"PROVIDER_ADAPTERS: {path} and {classes[kind].__module__}.{classes[kind].__qualname__} "
                f"both declare kind {kind!r}."
            )
        classes[kind] = cls
    return classes


def adapter_classes() -> Mapping[str, type[ProviderAdapter]]:
    """Every registered adapter class by kind, in the order of ``settings.PROVIDER_ADAPTERS``."""
    return _adapter_classes(tuple(settings.PROVIDER_ADAPTERS))


def adapter_class_or_none(kind: str) -> type[ProviderAdapter] | None:
    return adapter_classes().get(kind)


def adapter_class(kind: str) -> type[ProviderAdapter]:
    """The adapter class of ``kind``, or ProviderKindUnknown (a clear 400, never a 500)."""
    cls = adapter_classes().get(kind)
    if cls is None:
        raise ProviderKindUnknown(kind)
    return cls


def provider_kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every registered adapter: the valid values of Provider.kind."""
    return [(kind, cls.label) for kind, cls in adapter_classes().items()]


def adapters_import() -> None:
    """Import every adapter, and so its SDK, now: a web process calls this as it starts.

    Imported on a process's first turn instead, an SDK held the event loop (and every connection on it) for
    a second or more: openai alone loads over a thousand modules of types.
    """
    adapter_classes()


def provider_base_url(provider: "Provider") -> str | None:
    cls = adapter_class_or_none(provider.kind)
    if cls is None:
        return provider.base_url or None
    env = cls.base_url_env()
    return provider.base_url or (os.environ.get(env) if env else None) or cls.default_base_url or None


def provider_api_key(provider: "Provider") -> str | None:
    cls = adapter_class_or_none(provider.kind)
    names = [provider.api_key_env] if provider.api_key_env else []
    names += cls.fallback_key_env if cls is not None else ()
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def public_url(url: str | None) -> str | None:
    """A URL without user:password, for showing to API clients."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def provider_config(provider: "Provider") -> ProviderConfig:
    return ProviderConfig(
        name=provider.name,
        kind=provider.kind,
        base_url=provider_base_url(provider),
        api_key=provider_api_key(provider),
        timeout=settings.PROVIDER_TIMEOUT,
        max_retries=settings.PROVIDER_MAX_RETRIES,
        retry_base_delay=settings.PROVIDER_RETRY_BASE_DELAY,
        retry_max_delay=settings.PROVIDER_RETRY_MAX_DELAY,
        models_cache_seconds=settings.PROVIDER_MODELS_CACHE_SECONDS,
    )


def provider_problem(provider: "Provider") -> str | None:
    """Why ``provider`` cannot be called as configured (completing "not configured: ..."), or None."""
    cls = adapter_class_or_none(provider.kind)
    if cls is None:
        return (
            f"its kind {provider.kind!r} has no adapter (add the adapter class to settings.PROVIDER_ADAPTERS, "
            "or change the kind)"
        )
    if cls.requires_base_url and not provider_base_url(provider):
        return f"no base URL (a provider of kind {provider.kind!r} must name its server's)"
    if cls.requires_api_key and not provider_api_key(provider):
        return "no API key in the environment"
    return None


def provider_is_configured(provider: "Provider") -> bool:
    return provider_problem(provider) is None


ProviderStatus = Literal["ready", "no_key", "not_configured", "unreachable"]

# A probe answers in this long or the server counts as unreachable: a page that lists providers must not wait
# on one that is down. Refused connections (nothing listening) answer at once.
PROBE_CONNECT_TIMEOUT = 0.5
_probes: dict[str, tuple[float, bool]] = {}
_probes_lock = threading.Lock()


@dataclass(frozen=True)
class ProviderState:
    """Whether a provider can be offered now: ``status``, and ``reason`` (a sentence to show) when it is not ready."""

    status: ProviderStatus
    reason: str | None = None


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number
        return False
    try:
        with socket.create_connection((parts.hostname, port), timeout=PROBE_CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def provider_reachable(url: str) -> bool:
    """Whether something accepts connections at ``url``'s host and port, as probed at most every
    CONFIG_CACHE_SECONDS per process (a connect only: the model list then says whether it speaks the protocol)."""
    now = time.monotonic()
    with _probes_lock:
        entry = _probes.get(url)
    if entry is not None and now - entry[0] <= settings.CONFIG_CACHE_SECONDS:
        return entry[1]
    reachable = _reachable(url)
    with _probes_lock:
        _probes[url] = (time.monotonic(), reachable)
    return reachable


def provider_probe_cache_clear() -> None:
    with _probes_lock:
        _probes.clear()


def provider_state(provider: "Provider") -> ProviderState:
    """Whether ``provider`` can be offered for a turn now.

    A provider that needs a key and has one is ``ready`` without a network call (a public API is taken to be
    up); one that runs without a key (Ollama, a local OpenAI-compatible server) is ``ready`` only if its server
    accepts connections: "configured" alone offered an Ollama that nothing served.
    """
    cls = adapter_class_or_none(provider.kind)
    if cls is None:
        return ProviderState("not_configured", provider_problem(provider))
    base_url = provider_base_url(provider)
    # A missing base URL is the first thing to fix; a missing key comes next.
    if cls.requires_api_key and provider_api_key(provider) is None and (base_url or not cls.requires_base_url):
        return ProviderState("no_key", f"no API key (set {_key_names(provider, cls)} in the environment)")
    problem = provider_problem(provider)
    if problem is not None:
        return ProviderState("not_configured", problem)
    if provider_api_key(provider) is None and base_url and not provider_reachable(base_url):
        return ProviderState("unreachable", f"not reachable at {public_url(base_url)}")
    return ProviderState("ready")


def _key_names(provider: "Provider", cls: type[ProviderAdapter]) -> str:
    names = ([provider.api_key_env] if provider.api_key_env else []) + list(cls.fallback_key_env)
    return " or ".join(dict.fromkeys(names)) or "its key variable"


def adapter_for(provider: "Provider") -> ProviderAdapter:
    """The adapter for ``provider`` on the running event loop, created on first use."""
    cls = adapter_class(provider.kind)
    config = provider_config(provider)
    per_loop = _adapters.setdefault(get_running_loop(), {})
    adapter = per_loop.get(config)
    if adapter is None:
        adapter = per_loop[config] = cls(config)
    return adapter
