"""What the platform adds to a turn, and how many turns one Daphne process serves.

A local zero-latency OpenAI-compatible wire server (tests/fakes) plays the
model; the platform runs as a real Daphne process on its own database (a
throwaway SQLite file, or the PostgreSQL/Redis of DATABASE_URL/REDIS_URL when
set). Prints, in milliseconds:

1. a turn through REST JSON without tools vs. the same request made directly
   with the OpenAI SDK (median, p99, and the difference);
2. a turn with one tool round (model asks for a tool, the MCP test server
   answers, model replies) vs. two direct SDK calls plus one direct MCP call;
3. turns per second at concurrency 1 and 32 (REST JSON, no tools).

    .venv/bin/python bench/chat_overhead.py [--iterations 200] [--turns 640]
"""

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_DIR = tempfile.mkdtemp(prefix="chat-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DB_DIR}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")
os.environ["RATE_LIMIT_PER_MINUTE"] = "100000000"

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)

import httpx
import openai
from django.core.management import call_command
from mcp import Client, StdioServerParameters

from accounts.models import User
from accounts.services import api_key_create
from mcp_servers.models import McpServer
from providers.models import Provider, ProviderModel
from tests.fakes.openai_wire import OpenAIWire
from tests.fakes.wire import ToolCallSpec, Turn

MODEL = "gpt-4o-mini"
SERVER = [str(ROOT / "tests" / "mcp" / "server.py"), "stdio"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, values: list[float]) -> str:
    return f"  {label:<34} p50 {statistics.median(values):8.2f}   p99 {pct(values, 0.99):8.2f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def platform(port: int):
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench", "ALLOWED_HOSTS": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "platform_site.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def set_up(fake: OpenAIWire) -> str:
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="bench")
    Provider.objects.filter(name="openai").update(base_url=f"{fake.url}/v1", api_key_env="BENCH_OPENAI_KEY")
    ProviderModel.objects.get_or_create(provider=Provider.objects.get(name="openai"), model_id=MODEL)
    McpServer.objects.update_or_create(
        name="bench", defaults={"transport": "stdio", "command": sys.executable, "args": SERVER}
    )
    return api_key_create(owner=user, name="bench").secret


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--turns", type=int, default=640, help="turns per throughput run")
    args = parser.parse_args()

    os.environ["BENCH_OPENAI_KEY"] = "bench-key"
    fake = OpenAIWire().start()
    key = await asyncio.to_thread(set_up, fake)
    headers = {"Authorization": f"Bearer {key}"}
    plain = {"message": "Hello", "provider": "openai", "model": MODEL, "tools": False}
    sdk = openai.AsyncOpenAI(api_key="bench-key", base_url=f"{fake.url}/v1", max_retries=0)
    print(
        f"database: {django.conf.settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"redis: {'yes' if django.conf.settings.REDIS_URL else 'no'}; one Daphne process"
    )

    with platform(free_port()) as base_url:
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=60, limits=httpx.Limits(max_connections=64)
        ) as http:
            # 1. a plain turn
            direct, through = [], []
            for i in range(args.warmup + args.iterations):
                fake.requests.clear()
                started = time.perf_counter()
                await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
                d = (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                response = await http.post("/api/chat", json=plain)
                t = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                if i >= args.warmup:
                    direct.append(d)
                    through.append(t)
            print("turn without tools (ms):")
            print(row("provider SDK directly", direct))
            print(row("platform REST JSON turn", through))
            print(row("added by the platform", [t - d for t, d in zip(through, direct, strict=True)]))

            # 2. a turn with one tool round
            direct, through = [], []
            async with Client(StdioServerParameters(command=sys.executable, args=SERVER)) as mcp:
                for i in range(args.warmup + args.iterations):
                    fake.requests.clear()
                    started = time.perf_counter()
                    await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
                    await mcp.call_tool("echo", {"text": "ping"})
                    await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
                    d = (time.perf_counter() - started) * 1000
                    fake.push(Turn(tool_calls=[ToolCallSpec("bench__echo", {"text": "ping"})]), Turn(text="pong"))
                    started = time.perf_counter()
                    response = await http.post("/api/chat", json={**plain, "tools": True, "mcp_servers": ["bench"]})
                    t = (time.perf_counter() - started) * 1000
                    assert response.json()["tool_executions"][0]["content"] == "ping", response.text
                    if i >= args.warmup:
                        direct.append(d)
                        through.append(t)
            print("turn with one tool round (ms):")
            print(row("2 SDK calls + 1 MCP call directly", direct))
            print(row("platform REST JSON turn", through))
            print(row("added by the platform", [t - d for t, d in zip(through, direct, strict=True)]))

            # 3. throughput
            for concurrency in (1, 32):
                remaining = args.turns

                async def worker() -> None:
                    nonlocal remaining
                    while remaining > 0:
                        remaining -= 1
                        response = await http.post("/api/chat", json=plain)
                        assert response.status_code == 200, response.text

                fake.requests.clear()
                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
                print(
                    f"turns per second at concurrency {concurrency:>2}: {args.turns / elapsed:7.1f} "
                    f"({args.turns} turns in {elapsed:.1f} s)"
                )
    fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
