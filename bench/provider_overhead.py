"""What the adapter layer adds over a bare SDK call, per provider, streamed and not.

Each provider's real SDK talks to its local wire-level fake (tests/fakes) on
127.0.0.1. For every iteration the same SDK client makes one bare call and the
adapter one call (order alternating), so the server, socket and SDK costs are
shared and the difference is the adapter: conversion both ways, events, the
message builder, retry bookkeeping.

    .venv/bin/python bench/provider_overhead.py [--iterations 300] [--kinds openai,anthropic]
"""

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)  # the SDKs log every request at INFO

from providers.types import Message
from tests.fakes.providers import KINDS, MODELS, WIRES, adapter_on
from tests.fakes.wire import Turn

PROMPT = "Hello"
# A reply of 50 streamed pieces, so stream overhead is per-event work, not just set-up.
REPLY = Turn(text="The quick brown fox jumps over the lazy dog. " * 4 + "End of reply.....", chunk_size=4)


def bare_calls(kind: str, adapter) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    client, model = adapter.client, MODELS[kind]
    messages = [{"role": "user", "content": PROMPT}]
    if kind == "openai":

        async def json_call() -> None:
            await client.chat.completions.create(model=model, messages=messages)

        async def stream_call() -> None:
            stream = await client.chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True}
            )
            async for _ in stream:
                pass

    elif kind == "anthropic":

        async def json_call() -> None:
            await client.messages.create(model=model, max_tokens=4096, messages=messages)

        async def stream_call() -> None:
            stream = await client.messages.create(model=model, max_tokens=4096, messages=messages, stream=True)
            async for _ in stream:
                pass

    elif kind == "gemini":
        from google.genai import types as gt

        # As the adapter does: no automatic function calling, so both make exactly one request.
        config = gt.GenerateContentConfig(automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True))

        async def json_call() -> None:
            await client.aio.models.generate_content(model=model, contents=PROMPT, config=config)

        async def stream_call() -> None:
            async for _ in await client.aio.models.generate_content_stream(model=model, contents=PROMPT, config=config):
                pass

    else:

        async def json_call() -> None:
            await client.chat(model=model, messages=messages, stream=False)

        async def stream_call() -> None:
            async for _ in await client.chat(model=model, messages=messages, stream=True):
                pass

    return json_call, stream_call


def adapter_calls(kind: str, adapter) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    messages, model = [Message.user(PROMPT)], MODELS[kind]

    async def json_call() -> None:
        await adapter.complete(messages=messages, model=model)

    async def stream_call() -> None:
        async for _ in adapter.stream(messages=messages, model=model):
            pass

    return json_call, stream_call


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(kind: str, iterations: int, warmup: int) -> list[tuple[str, list[float], list[float]]]:
    server = WIRES[kind]().start()
    # Every call gets the same 50-piece reply.
    server.next_reply = lambda default=None: REPLY  # type: ignore[method-assign]
    try:
        adapter = adapter_on(kind, server)
        bare_json, bare_stream = bare_calls(kind, adapter)
        ours_json, ours_stream = adapter_calls(kind, adapter)
        rows = []
        for mode, bare, ours in (("json", bare_json, ours_json), ("stream", bare_stream, ours_stream)):
            bare_times, our_times = [], []
            for i in range(warmup + iterations):
                first, second = (bare, ours) if i % 2 else (ours, bare)
                t_first, t_second = await timed(first), await timed(second)
                t_bare, t_ours = (t_first, t_second) if i % 2 else (t_second, t_first)
                if i >= warmup:
                    bare_times.append(t_bare)
                    our_times.append(t_ours)
                server.requests.clear()
            rows.append((mode, bare_times, our_times))
        return rows
    finally:
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()

    print(f"{args.iterations} calls per row after {args.warmup} warm-up; times in ms; 50-piece reply")
    header = f"{'provider':<10} {'mode':<7} {'bare p50':>9} {'bare p99':>9} {'adapter p50':>12} {'adapter p99':>12}"
    print(header + f" {'added p50':>10} {'added p99':>10}")
    for kind in args.kinds.split(","):
        for mode, bare, ours in await measure(kind, args.iterations, args.warmup):
            added = [o - b for o, b in zip(ours, bare, strict=True)]
            print(
                f"{kind:<10} {mode:<7} {statistics.median(bare):9.3f} {pct(bare, 0.99):9.3f} "
                f"{statistics.median(ours):12.3f} {pct(ours, 0.99):12.3f} "
                f"{statistics.median(added):10.3f} {pct(added, 0.99):10.3f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
