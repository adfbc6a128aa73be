"""The four provider fakes together, and adapters pointed at them, for tests and benchmarks."""

from typing import Any

from providers.base import ProviderAdapter, ProviderConfig
from providers.registry import adapter_class

from .anthropic_wire import AnthropicWire
from .gemini_wire import GeminiWire
from .ollama_wire import OllamaWire
from .openai_wire import OpenAIWire
from .wire import WireServer

KINDS = ("anthropic", "openai", "gemini", "ollama")
WIRES: dict[str, type[WireServer]] = {
    "anthropic": AnthropicWire,
    "openai": OpenAIWire,
    "gemini": GeminiWire,
    "ollama": OllamaWire,
}
# A model each fake knows (and genai-prices prices, where the provider is priced).
MODELS = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4o-mini",
    "gemini": "gemini-2.5-flash",
    "ollama": "llama3.2",
}


def base_url(kind: str, server: WireServer) -> str:
    # The OpenAI SDK wants /v1 in the base URL; the others add their own version prefix.
    return f"{server.url}/v1" if kind == "openai" else server.url


def start_all() -> dict[str, WireServer]:
    return {kind: WIRES[kind]().start() for kind in KINDS}


def stop_all(servers: dict[str, WireServer]) -> None:
    for server in servers.values():
        server.stop()


def adapter_on(kind: str, server: WireServer, **config: Any) -> ProviderAdapter:
    settings = {"api_key": "test-key", "retry_base_delay": 0.01, "retry_max_delay": 0.2, **config}
    return adapter_class(kind)(ProviderConfig(name=kind, kind=kind, base_url=base_url(kind, server), **settings))
