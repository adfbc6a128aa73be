"""N concurrent WebSocket chats against one Daphne process, each streaming a reply token by token.

A local OpenAI-compatible wire server (tests/fakes) streams every reply in 50
pieces, one every --gap ms. N WebSocket clients (the `websockets` library)
each send one message at the same moment and read their turn to the end.
Prints turns completed, tokens lost (pieces sent by the provider that a client
did not receive; must be 0), the time-to-first-token the platform adds over the
provider's own (measured with the SDK directly), the p50/p99 gap between tokens
as clients see them, and the Daphne process's peak memory.

    .venv/bin/python bench/ws_streams.py --clients 100
    .venv/bin/python bench/ws_streams.py --clients 1000
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_DIR = tempfile.mkdtemp(prefix="ws-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DB_DIR}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")
os.environ["RATE_LIMIT_PER_MINUTE"] = "100000000"

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)

import openai
import websockets
from django.core.management import call_command

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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def platform(port: int):
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "platform_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # BENCH_SERVER_LOG=FILE keeps Daphne's log for a look afterwards.
        stderr=open(os.environ["BENCH_SERVER_LOG"], "w") if os.environ.get("BENCH_SERVER_LOG") else subprocess.DEVNULL,  # noqa: SIM115
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def set_up(fake: OpenAIWire, clients: int) -> tuple[str, list[int]]:
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="ws-bench")
    Provider.objects.filter(name="openai").update(base_url=f"{fake.url}/v1", api_key_env="BENCH_OPENAI_KEY")
    ProviderModel.objects.get_or_create(provider=Provider.objects.get(name="openai"), model_id=MODEL)
    chats = Chat.objects.bulk_create(Chat(owner=user, title=f"bench {i}") for i in range(clients))
    return api_key_create(owner=user, name="ws-bench").secret, [chat.pk for chat in chats]


async def provider_ttft(fake: OpenAIWire, samples: int = 20) -> float:
    sdk = openai.AsyncOpenAI(api_key="bench-key", base_url=f"{fake.url}/v1", max_retries=0)
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        stream = await sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                times.append((time.perf_counter() - started) * 1000)
                break
        await stream.close()
    return statistics.median(times)


async def one_chat(url: str, key: str, start: asyncio.Event, handshakes: asyncio.Semaphore) -> dict:
    result = {"frames": 0, "text": "", "ttft": None, "gaps": [], "done": False, "error": None}
    try:
        await handshakes.acquire()  # clients arrive in waves, not all in the same millisecond
        released = False
        async with websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {key}"},
            origin="http://127.0.0.1",
            open_timeout=60,
            max_queue=None,
        ) as ws:
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--gap", type=float, default=20.0, help="ms between the provider's pieces")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # many sockets, here and in Daphne

    os.environ["BENCH_OPENAI_KEY"] = "bench-key"
    fake = OpenAIWire().start()
    fake.stream_delay = args.gap / 1000
    fake.next_reply = lambda default=None: Turn(text=TEXT, chunk_size=4)  # every request: the same 50 pieces
    key, chat_ids = await asyncio.to_thread(set_up, fake, args.clients)
    own_ttft = await provider_ttft(fake)

    port = free_port()
    with platform(port) as process:
        start = asyncio.Event()
        handshakes = asyncio.Semaphore(50)
        tasks = [
            asyncio.ensure_future(one_chat(f"ws://127.0.0.1:{port}/ws/chats/{chat_id}/", key, start, handshakes))
            for chat_id in chat_ids
        ]
        await asyncio.sleep(2 + args.clients / 50)  # let every client connect
        started = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
        peak = peak_rss_mb(process.pid)

    done = [r for r in results if r["done"]]
    # Under load the WebSocket merges waiting deltas into one frame: count the pieces in the text.
    lost = sum(PIECES - len(PIECE_RE.findall(r["text"])) for r in results)
    corrupted = sum(1 for r in done if r["text"] != TEXT)
    ttfts = [r["ttft"] for r in done if r["ttft"] is not None]
    gaps = [gap for r in done for gap in r["gaps"]]
    errors = sorted({r["error"] for r in results if r["error"]})
    print(
        f"clients: {args.clients}; provider streams {PIECES} pieces, one every {args.gap:g} ms; "
        f"database: {django.conf.settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
    )
    print(
        f"turns completed: {len(done)} of {args.clients} in {elapsed:.1f} s"
        + (f" (errors: {errors})" if errors else "")
    )
    print(f"tokens lost: {lost}; replies with wrong text: {corrupted}")
    print(
        f"time to first token: provider alone {own_ttft:.1f} ms; through the platform p50 "
        f"{statistics.median(ttfts):.1f} ms, p99 {pct(ttfts, 0.99):.1f} ms; added p50 "
        f"{statistics.median(ttfts) - own_ttft:.1f} ms"
    )
    frames = sum(r["frames"] for r in done)
    print(f"text frames: {frames} for {PIECES * len(done)} pieces (pieces waiting together share a frame)")
    print(
        f"gap between text frames at the client: p50 {statistics.median(gaps):.1f} ms, p99 {pct(gaps, 0.99):.1f} ms "
        f"(provider: {args.gap:g} ms)"
    )
    print(f"Daphne peak memory (VmHWM): {peak:.0f} MB")
    fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
