"""N concurrent WebSocket chats against one server process, each streaming a reply token by token; or N idle sockets.

A local OpenAI-compatible wire server (tests/fakes) streams every reply in 50
pieces, one every --gap ms. The platform runs as one real server process
(--server daphne|uvicorn) with DEBUG off. N WebSocket clients (the
`websockets` library) connect in waves of 50 handshakes, then each sends one
message at the same moment and reads its turn to the end. Prints turns
completed, tokens lost (pieces sent by the provider that a client did not
receive; must be 0), time to first token through the platform beside the
provider's own (measured with the SDK directly): p50/p99, added, and the ratio;
the p50/p99 gap between text frames as clients see them, and the server
process's peak memory.

--idle N instead opens N WebSockets to N chats (waves of 50), reads each
`ready` frame, holds them idle for 5 s, and prints the serving process's
resident memory (VmRSS) before the first (after a warm-up connection) and
with all open: the difference, and per 1,000 sockets.

    .venv/bin/python bench/ws_streams.py --clients 100 [--gap 20] [--server uvicorn]
    .venv/bin/python bench/ws_streams.py --clients 1000
    .venv/bin/python bench/ws_streams.py --idle 1000

Uses a throwaway SQLite database, or DATABASE_URL/REDIS_URL when set.
BENCH_SERVER_LOG=FILE keeps the server's stderr.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_DIR = tempfile.mkdtemp(prefix="ws-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DB_DIR}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")
os.environ["RATE_LIMIT_PER_MINUTE"] = "100000000"

from platform_process import ensure_database

ensure_database(os.environ["DATABASE_URL"])

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)

import httpx
import openai
import websockets
from django.core.management import call_command
from platform_process import (
    PlatformServer,
    ServerFailed,
    deep_fake_backlog,
    pct,
    peak_rss_mb,
    platform,
    raise_open_files,
    rss_mb,
)
from websockets.typing import Origin

from accounts.models import User
from accounts.services import api_key_create
from chats.models import Chat
from providers.models import Provider, ProviderModel
from tests.fakes.openai_wire import OpenAIWire
from tests.fakes.wire import Turn

MODEL = "gpt-4o-mini"
PIECES = 50
TEXT = "".join(f"w{i:02d} " for i in range(PIECES))
PIECE_RE = re.compile(r"w\d\d ")  # 4 characters a piece: each piece is one "token"
WAVE = 50  # handshakes at a time
IDLE_SECONDS = 5
# clients -> most time to first token the platform may add at p50 (ms)
TTFT_TARGETS = {100: 300, 1000: 3000}
GAP_P99_TARGETS = {100: 150}  # clients -> most p99 gap between text frames (ms)


def set_up(fake: OpenAIWire, chats: int) -> tuple[str, list[int]]:
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="ws-bench")
    Provider.objects.filter(name="openai").update(base_url=f"{fake.url}/v1", api_key_env="BENCH_OPENAI_KEY")
    ProviderModel.objects.get_or_create(provider=Provider.objects.get(name="openai"), model_id=MODEL)
    created = Chat.objects.bulk_create(Chat(owner=user, title=f"bench {i}") for i in range(chats))
    return api_key_create(owner=user, name="ws-bench").secret, [chat.pk for chat in created]


async def provider_ttft(fake: OpenAIWire, samples: int = 20, warmup: int = 3) -> list[float]:
    sdk = openai.AsyncOpenAI(api_key="bench-key", base_url=f"{fake.url}/v1", max_retries=0)
    times = []
    for _ in range(warmup + samples):
        started = time.perf_counter()
        stream = await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append((time.perf_counter() - started) * 1000)
                break
        await stream.close()
    return times[warmup:]


def connect(url: str, key: str) -> websockets.connect:
    return websockets.connect(
        url,
        additional_headers={"Authorization": f"Bearer {key}"},
        origin=Origin("http://127.0.0.1"),
        open_timeout=60,
        max_queue=None,
    )


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "missed"


# --- streaming turns ----------------------------------------------------------------------------


async def one_chat(url: str, key: str, start: asyncio.Event, handshakes: asyncio.Semaphore) -> dict:
    result: dict[str, Any] = {"frames": 0, "text": "", "ttft": None, "gaps": [], "done": False, "error": None}
    try:
        await handshakes.acquire()  # clients arrive in waves, not all in the same millisecond
        released = False
        async with connect(url, key) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            handshakes.release()
            released = True
            await start.wait()
            sent = time.perf_counter()
            last = None
            await ws.send(
                json.dumps({"type": "message", "message": "Hi", "provider": "openai", "model": MODEL, "tools": False})
            )
            async for raw in ws:
                event = json.loads(raw)
                now = time.perf_counter()
                if event["type"] == "text_delta":
                    if last is None:
                        result["ttft"] = (now - sent) * 1000
                    else:
                        result["gaps"].append((now - last) * 1000)
                    last = now
                    result["frames"] += 1
                    result["text"] += event["text"]
                elif event["type"] == "error":
                    result["error"] = event.get("code")
                elif event["type"] == "turn_done":
                    result["done"] = event["success"]
                    break
    except Exception as exc:  # counted, not fatal: a benchmark reports what failed
        result["error"] = type(exc).__name__
        if not released:
            handshakes.release()
    return result


async def streams(args: argparse.Namespace, fake: OpenAIWire) -> None:
    fake.stream_delay = args.gap / 1000
    # Every request: the same 50 pieces.
    fake.next_reply = lambda default=None: Turn(text=TEXT, chunk_size=4)  # type: ignore[method-assign]
    key, chat_ids = await asyncio.to_thread(set_up, fake, args.clients)
    own = await provider_ttft(fake)

    with platform(args.server) as server:
        start = asyncio.Event()
        handshakes = asyncio.Semaphore(WAVE)
        tasks = [
            asyncio.ensure_future(one_chat(f"{server.ws_url}/ws/chats/{chat_id}/", key, start, handshakes))
            for chat_id in chat_ids
        ]
        await asyncio.sleep(2 + args.clients / WAVE)  # let every client connect
        started = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        peak = peak_rss_mb(server.serving_pids())
        described = server.describe()

    done = [r for r in results if r["done"]]
    # Under load the WebSocket merges waiting deltas into one frame: count the pieces in the text.
    lost = sum(PIECES - len(PIECE_RE.findall(r["text"])) for r in results)
    corrupted = sum(1 for r in done if r["text"] != TEXT)
    ttfts = [r["ttft"] for r in done if r["ttft"] is not None]
    gaps = [gap for r in done for gap in r["gaps"]]
    errors = sorted({r["error"] for r in results if r["error"]})
    print(
        f"clients: {args.clients}; provider streams {PIECES} pieces, one every {args.gap:g} ms; "
        f"server: {described}; database: {django.conf.settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"redis: {'yes' if django.conf.settings.REDIS_URL else 'no'}"
    )
    print(
        f"turns completed: {len(done)} of {args.clients} in {elapsed:.1f} s"
        + (f" (errors: {errors})" if errors else "")
    )
    print(f"tokens lost: {lost}; replies with wrong text: {corrupted}   target: 0 lost ({verdict(lost, 0)})")
    if not ttfts:
        print("no turn streamed a token: nothing to measure")
        return
    own_p50, own_p99, p50, p99 = statistics.median(own), pct(own, 0.99), statistics.median(ttfts), pct(ttfts, 0.99)
    print("time to first token (ms):")
    print(f"  provider alone (SDK directly)        p50 {own_p50:8.1f}   p99 {own_p99:8.1f}")
    print(f"  through the platform                 p50 {p50:8.1f}   p99 {p99:8.1f}")
    print(f"  added by the platform                p50 {p50 - own_p50:8.1f}   p99 {p99 - own_p99:8.1f}")
    print(f"  platform / provider                  p50 {p50 / own_p50:7.1f}x   p99 {p99 / own_p99:7.1f}x")
    if args.clients in TTFT_TARGETS:
        limit = TTFT_TARGETS[args.clients]
        print(f"  target at {args.clients}: added p50 <= {limit} ms ({verdict(p50 - own_p50, limit)})")
    frames = sum(r["frames"] for r in done)
    print(f"text frames: {frames} for {PIECES * len(done)} pieces (pieces waiting together share a frame)")
    if gaps:
        gap_p99 = pct(gaps, 0.99)
        line = (
            f"gap between text frames at the client: p50 {statistics.median(gaps):.1f} ms, p99 {gap_p99:.1f} ms "
            f"(provider: {args.gap:g} ms)"
        )
        if args.clients in GAP_P99_TARGETS:
            limit = GAP_P99_TARGETS[args.clients]
            line += f"   target p99 <= {limit} ms ({verdict(gap_p99, limit)})"
        print(line)
    print(f"server peak memory (VmHWM): {peak:.0f} MB")


# --- idle sockets -------------------------------------------------------------------------------


async def open_ready(url: str, key: str, handshakes: asyncio.Semaphore) -> websockets.ClientConnection:
    async with handshakes:
        ws = await connect(url, key)
        try:
            frame = json.loads(await ws.recv())
            if frame.get("type") != "ready":
                raise RuntimeError(f"first frame {frame.get('type')!r}, not 'ready'")
        except BaseException:
            await ws.close()
            raise
        return ws


async def warm_up(server: PlatformServer, key: str, chat_id: int) -> None:
    """One request and one socket through every layer first, so imports and caches are not counted as sockets."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.get("/healthz")
    ws = await open_ready(f"{server.ws_url}/ws/chats/{chat_id}/", key, asyncio.Semaphore(1))
    await ws.close()


async def idle(args: argparse.Namespace, fake: OpenAIWire) -> None:
    key, chat_ids = await asyncio.to_thread(set_up, fake, args.idle + 1)
    with platform(args.server) as server:
        await warm_up(server, key, chat_ids[0])
        await asyncio.sleep(1)
        pids = server.serving_pids()
        before = rss_mb(pids)
        handshakes = asyncio.Semaphore(WAVE)
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(open_ready(f"{server.ws_url}/ws/chats/{chat_id}/", key, handshakes) for chat_id in chat_ids[1:]),
            return_exceptions=True,
        )
        opened = [ws for ws in outcomes if isinstance(ws, websockets.ClientConnection)]
        connect_time = time.perf_counter() - started
        await asyncio.sleep(IDLE_SECONDS)
        still_open = sum(1 for ws in opened if ws.state is websockets.State.OPEN)
        after = rss_mb(pids)
        peak = peak_rss_mb(pids)
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        described = server.describe()

    failed: dict[str, int] = {}
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            failed[type(outcome).__name__] = failed.get(type(outcome).__name__, 0) + 1
    added = after - before
    per_thousand = added / len(opened) * 1000 if opened else float("nan")
    print(
        f"idle sockets: {args.idle}; server: {described}; "
        f"database: {django.conf.settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"redis: {'yes' if django.conf.settings.REDIS_URL else 'no'}"
    )
    print(
        f"opened: {len(opened)} of {args.idle} in {connect_time:.1f} s (waves of {WAVE}); "
        f"still open after {IDLE_SECONDS} s idle: {still_open}" + (f"; failed: {failed}" if failed else "")
    )
    print(f"server memory (VmRSS): {before:.1f} MB before, {after:.1f} MB with them open; peak {peak:.1f} MB")
    print(
        f"added: {added:.1f} MB = {per_thousand:.1f} MB per 1,000 sockets   "
        f"target <= 100 MB per 1,000 ({verdict(per_thousand, 100)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="streaming chats at once")
    parser.add_argument("--gap", type=float, default=20.0, help="ms between the provider's pieces")
    parser.add_argument("--idle", type=int, default=0, help="instead: hold this many idle sockets, measure memory")
    parser.add_argument("--server", default="daphne", choices=["daphne", "uvicorn"])
    args = parser.parse_args()
    raise_open_files()
    deep_fake_backlog()
    os.environ["BENCH_OPENAI_KEY"] = "bench-key"
    fake = OpenAIWire().start()
    try:
        await (idle(args, fake) if args.idle else streams(args, fake))
    finally:
        fake.stop()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ServerFailed as exc:
        sys.exit(f"server failed: {exc}")
