"""From a Provider row to a ready adapter: the registered kinds, configuration from the environment, clients reused.

The kinds are the adapter classes listed in ``settings.PROVIDER_ADAPTERS``; everything else about a kind
(label, default base URL, fallback key variables, price source, schema dialect) is read from its class, so
no table here is keyed by kind. Base URL and key are read when the adapter is built, never frozen into rows.
An adapter (and its SDK client with its connection pool) is created once per event loop and configuration,
then reused: SDK async clients belong to the loop that made them.
"""

import functools
import os
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Mapping
from typing import TYPE_CHECKING
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


def adapter_for(provider: "Provider") -> ProviderAdapter:
    """The adapter for ``provider`` on the running event loop, created on first use."""
    cls = adapter_class(provider.kind)
    config = provider_config(provider)
    per_loop = _adapters.setdefault(get_running_loop(), {})
    adapter = per_loop.get(config)
    if adapter is None:
        adapter = per_loop[config] = cls(config)
    return adapter
