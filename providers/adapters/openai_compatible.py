"""Any OpenAI-compatible server: vLLM, LM Studio, llama.cpp's server, OpenRouter, Groq, Together, ...

The OpenAI adapter speaks the wire; this kind differs only in what it declares. Each row names its own
server (a base URL with ``/v1`` is required), the env var of its key (blank for a server that takes none:
the SDK still wants one, so a dummy goes out) and gets its models from the server's ``/v1/models`` and its
admin rows. No list price exists for whatever a server hosts: only admin rows price its models.
"""

from typing import ClassVar

from ..base import ADMIN_PRICES_ONLY, PriceSource
from .openai import OpenAIAdapter


class OpenAICompatibleAdapter(OpenAIAdapter):
    kind: ClassVar[str] = "openai_compatible"
    label: ClassVar[str] = "OpenAI-compatible server (vLLM, LM Studio, llama.cpp, OpenRouter, Groq, Together)"
    price_source: ClassVar[PriceSource] = ADMIN_PRICES_ONLY
    default_base_url: ClassVar[str | None] = None
    fallback_key_env: ClassVar[tuple[str, ...]] = ()
    requires_api_key: ClassVar[bool] = False
    requires_base_url: ClassVar[bool] = True
