"""From a Provider row to a ready adapter: configuration read from the environment, clients reused.

Base URL and key are read when the adapter is built, never frozen into rows.
An adapter (and its SDK client with its connection pool) is created once per
event loop and configuration, then reused: SDK async clients belong to the loop
that made them.
"""

import functools
import os
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.utils.module_loading import import_string

from .base import ProviderAdapter, ProviderConfig
from .models import Provider, ProviderKind

ADAPTER_PATHS = {
    ProviderKind.ANTHROPIC: "providers.adapters.anthropic.AnthropicAdapter",
    ProviderKind.OPENAI: "providers.adapters.openai.OpenAIAdapter",
    ProviderKind.GEMINI: "providers.adapters.gemini.GeminiAdapter",
    ProviderKind.OLLAMA: "providers.adapters.ollama.OllamaAdapter",
}

# Env vars consulted after the row's own api_key_env, per kind.
FALLBACK_KEY_ENV = {ProviderKind.GEMINI: ("GOOGLE_API_KEY",)}
DEFAULT_BASE_URLS = {ProviderKind.OLLAMA: "http://localhost:11434"}

_adapters: "weakref.WeakKeyDictionary[AbstractEventLoop, dict[ProviderConfig, ProviderAdapter]]" = (
    weakref.WeakKeyDictionary()
)


@functools.cache
def adapter_class(kind: str) -> type[ProviderAdapter]:
    # Cached: import_string re-enters the import system on every call, which shows on the turn's hot path.
    return import_string(ADAPTER_PATHS[ProviderKind(kind)])


def adapters_import() -> None:
    """Import every adapter, and so its SDK, now: a web process calls this as it starts.

    Imported on a process's first turn instead, an SDK held the event loop (and every connection on it) for
    a second or more: openai alone loads over a thousand modules of types.
    """
    for kind in ADAPTER_PATHS:
        adapter_class(kind)


def provider_base_url(provider: Provider) -> str | None:
    return (
        provider.base_url
        or os.environ.get(f"{provider.kind.upper()}_BASE_URL")
        or DEFAULT_BASE_URLS.get(ProviderKind(provider.kind))
        or None
    )


def provider_api_key(provider: Provider) -> str | None:
    names = [provider.api_key_env] if provider.api_key_env else []
    names += FALLBACK_KEY_ENV.get(ProviderKind(provider.kind), ())
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


def provider_config(provider: Provider) -> ProviderConfig:
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


def provider_is_configured(provider: Provider) -> bool:
    return bool(provider_api_key(provider)) or not adapter_class(provider.kind).requires_api_key


def adapter_for(provider: Provider) -> ProviderAdapter:
    """The adapter for ``provider`` on the running event loop, created on first use."""
    config = provider_config(provider)
    per_loop = _adapters.setdefault(get_running_loop(), {})
    adapter = per_loop.get(config)
    if adapter is None:
        adapter = per_loop[config] = adapter_class(provider.kind)(config)
    return adapter
