"""What the platform adds to a turn, and how many turns per second it serves, beside the same calls made directly.

A local zero-latency OpenAI-compatible wire server (tests/fakes) plays the
model; the platform runs as a real server process (Daphne, or uvicorn with
--processes N workers) with DEBUG off on its own database (a throwaway SQLite
file, or the PostgreSQL/Redis of DATABASE_URL/REDIS_URL when set). Every figure
is printed in milliseconds (or turns/s) beside a direct baseline measured in
the same run, with the ratio and the target. Sections (--sections):

fresh       a turn through REST JSON (POST /api/chat, new chat, no tools) vs. the
            same request made directly with the OpenAI SDK: p50/p99 of direct,
            through, added, and through / direct;
tools       a turn with one tool round (model asks for a tool, the MCP test server
            answers, model replies) vs. two direct SDK calls plus one direct MCP call;
history     a turn on a chat of 400 stored messages (POST /api/chats/{id}/messages;
            the turn's own messages are deleted after each one) vs. the SDK sending
            the same 401 messages; and its added time / the fresh chat's;
v1          the OpenAI-compatible front: POST /v1/chat/completions (model
            "openai/<model>", new chat, no tools) vs. the same request made directly
            with the OpenAI SDK; the same figures and targets as fresh;
throughput  turns per second at each --concurrency, first as direct SDK calls, then
            through the platform, every turn on its own pre-created chat; responses
            are counted by status and failures by exception, never fatal; and the
            CPU time the serving processes spent per turn.

    .venv/bin/python bench/chat_overhead.py [--iterations 200] [--warmup 20] [--sections fresh,tools,history,v1]
    .venv/bin/python bench/chat_overhead.py --sections throughput --concurrency 1,32,256 [--turns 640]
    .venv/bin/python bench/chat_overhead.py --server uvicorn --compare-processes 1,2 --concurrency 64

--server daphne|uvicorn (default daphne; Daphne has one process), --processes N
(uvicorn workers), --compare-processes 1,2 (throughput only, one server per
count, and the ratio of their turns/s). BENCH_SERVER_LOG=FILE keeps the
server's stderr. uvicorn runs with uvloop and httptools.
"""

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_DIR = tempfile.mkdtemp(prefix="chat-bench-")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DB_DIR}/bench.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")
os.environ["RATE_LIMIT_PER_MINUTE"] = "100000000"

from platform_process import ensure_database

ensure_database(os.environ["DATABASE_URL"])

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)

import httpx
import httpx2
import openai
from django.core.management import call_command
from mcp import Client, StdioServerParameters
from openai.types.chat import ChatCompletionMessageParam
from platform_process import (
    PlatformServer,
    ServerFailed,
    check_server,
    cpu_seconds,
    deep_fake_backlog,
    pct,
    platform,
    raise_open_files,
)

from accounts.models import User
from accounts.services import api_key_create
from chats.models import Chat, Message
from mcp_servers.models import McpServer
from providers.models import Provider, ProviderModel
from tests.fakes.openai_wire import OpenAIWire
from tests.fakes.wire import ToolCallSpec, Turn

MODEL = "gpt-4o-mini"
SERVER = [str(ROOT / "tests" / "mcp" / "server.py"), "stdio"]
SECTIONS = ("fresh", "tools", "history", "v1", "throughput")
PLAIN = {"message": "Hello", "provider": "openai", "model": MODEL, "tools": False}
OK = "200"
TIMEOUT = 120.0


# --- figures ------------------------------------------------------------------------------------


def row(label: str, values: list[float]) -> str:
    return f"  {label:<36} p50 {statistics.median(values):8.2f}   p99 {pct(values, 0.99):8.2f}"


def ratio_row(label: str, over: list[float], under: list[float]) -> str:
    p50 = statistics.median(over) / statistics.median(under)
    p99 = pct(over, 0.99) / pct(under, 0.99)
    return f"  {label:<36} p50 {p50:7.2f}x   p99 {p99:7.2f}x"


def verdict(value: float, limit: float, *, at_least: bool = False) -> str:
    met = value >= limit if at_least else value <= limit
    return "met" if met else "missed"


def counts(outcomes: Counter[str]) -> str:
    return ", ".join(f"{label} x{n}" for label, n in sorted(outcomes.items())) or "none"


@dataclass
class Paired:
    """Direct and through-the-platform times (ms) of the same iterations; failed iterations only counted."""

    direct: list[float] = field(default_factory=list)
    through: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def added(self) -> list[float]:
        return [t - d for t, d in zip(self.through, self.direct, strict=True)]


async def paired_turns(
    *,
    iterations: int,
    warmup: int,
    direct: Callable[[], Awaitable[object]],
    through: Callable[[], Awaitable[httpx.Response]],
    failure: Callable[[httpx.Response], str | None] = lambda r: None if r.status_code == 200 else str(r.status_code),
    before: Callable[[], None] = lambda: None,
    after: Callable[[], Awaitable[None]] | None = None,
) -> Paired:
    """Each iteration: the direct call, then (after `before`, untimed) the platform's; `after` runs untimed."""
    result = Paired()
    for i in range(warmup + iterations):
        started = time.perf_counter()
        await direct()
        d = (time.perf_counter() - started) * 1000
        before()
        started = time.perf_counter()
        try:
            response = await through()
            failed = failure(response)
        except Exception as exc:  # counted, not fatal: a benchmark reports what failed
            failed = type(exc).__name__
        t = (time.perf_counter() - started) * 1000
        if after is not None:
            await after()
        if i < warmup:
            continue
        if failed:
            result.failures[failed] += 1
        else:
            result.direct.append(d)
            result.through.append(t)
    return result


def report(title: str, direct_label: str, paired: Paired, through_label: str = "platform REST JSON turn") -> bool:
    """Print a section's rows; False when no iteration succeeded."""
    print(f"{title} (ms):")
    if paired.failures:
        print(f"  failed, not in the figures: {counts(paired.failures)}")
    if not paired.through:
        print("  no successful turn to measure")
        return False
    print(row(direct_label, paired.direct))
    print(row(through_label, paired.through))
    print(row("added by the platform", paired.added))
    print(ratio_row("platform / direct", paired.through, paired.direct))
    return True


# --- set-up -------------------------------------------------------------------------------------


def set_up(fake: OpenAIWire) -> tuple[User, str]:
    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(username="bench")
    Provider.objects.filter(name="openai").update(base_url=f"{fake.url}/v1", api_key_env="BENCH_OPENAI_KEY")
    ProviderModel.objects.get_or_create(provider=Provider.objects.get(name="openai"), model_id=MODEL)
    McpServer.objects.update_or_create(
        name="bench", defaults={"transport": "stdio", "command": sys.executable, "args": SERVER}
    )
    return user, api_key_create(owner=user, name="bench").secret


def history_text(position: int) -> str:
    who = "question" if position % 2 == 0 else "answer"
    return f"Stored {who} number {position}: a line of about the length people type in a chat, give or take."


def chat_with_history(user: User, messages: int) -> int:
    chat = Chat.objects.create(owner=user, title=f"bench history of {messages}")
    Message.objects.bulk_create(
        Message(
            chat=chat,
            position=position,
            role="user" if position % 2 == 0 else "assistant",
            content=[{"type": "text", "text": history_text(position)}],
            provider="" if position % 2 == 0 else "openai",
            model="" if position % 2 == 0 else MODEL,
        )
        for position in range(messages)
    )
    return chat.pk


def chats_create(user: User, n: int) -> list[int]:
    return [chat.pk for chat in Chat.objects.bulk_create(Chat(owner=user, title=f"bench {i}") for i in range(n))]


# --- latency sections ---------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    fake: OpenAIWire
    sdk: openai.AsyncOpenAI
    user: User
    headers: dict[str, str]
    fresh_added: list[float] | None = None


async def section_fresh(bench: Bench, http: httpx.AsyncClient) -> None:
    paired = await paired_turns(
        iterations=bench.args.iterations,
        warmup=bench.args.warmup,
        direct=lambda: bench.sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}]),
        through=lambda: http.post("/api/chat", json=PLAIN),
        before=bench.fake.reset,
    )
    if report("turn without tools, fresh chat", "provider SDK directly", paired):
        added = paired.added
        bench.fresh_added = added
        p50, p99 = statistics.median(added), pct(added, 0.99)
        print(f"  target: added p50 <= 5 ms ({verdict(p50, 5)}), p99 <= 15 ms ({verdict(p99, 15)})")


async def section_v1(bench: Bench, http: httpx.AsyncClient) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    paired = await paired_turns(
        iterations=bench.args.iterations,
        warmup=bench.args.warmup,
        direct=lambda: bench.sdk.chat.completions.create(model=MODEL, messages=messages),  # type: ignore[arg-type]
        through=lambda: http.post("/v1/chat/completions", json={"model": f"openai/{MODEL}", "messages": messages}),
        before=bench.fake.reset,
    )
    if report("/v1/chat/completions, fresh chat", "provider SDK directly", paired, "platform /v1 completion"):
        added = paired.added
        p50, p99 = statistics.median(added), pct(added, 0.99)
        print(f"  target: added p50 <= 5 ms ({verdict(p50, 5)}), p99 <= 15 ms ({verdict(p99, 15)})")


async def section_tools(bench: Bench, http: httpx.AsyncClient) -> None:
    fake = bench.fake

    def script() -> None:
        fake.reset()
        fake.push(Turn(tool_calls=[ToolCallSpec("bench__echo", {"text": "ping"})]), Turn(text="pong"))

    def failure(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return str(response.status_code)
        executions = response.json().get("tool_executions") or []
        return None if executions and executions[0].get("content") == "ping" else "200 without the tool's result"

    async with Client(StdioServerParameters(command=sys.executable, args=SERVER)) as mcp:

        async def direct() -> None:
            await bench.sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
            await mcp.call_tool("echo", {"text": "ping"})
            await bench.sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])

        paired = await paired_turns(
            iterations=bench.args.iterations,
            warmup=bench.args.warmup,
            direct=direct,
            through=lambda: http.post("/api/chat", json={**PLAIN, "tools": True, "mcp_servers": ["bench"]}),
            failure=failure,
            before=script,
        )
    fake.reset()
    if report("turn with one tool round", "2 SDK calls + 1 MCP call directly", paired):
        p50 = statistics.median(paired.added)
        print(f"  target: added p50 <= 8 ms ({verdict(p50, 8)})")


async def section_history(bench: Bench, http: httpx.AsyncClient) -> None:
    stored = bench.args.history
    chat_id = await asyncio.to_thread(chat_with_history, bench.user, stored)
    history: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": history_text(p)}
        if p % 2 == 0
        else {"role": "assistant", "content": history_text(p)}
        for p in range(stored)
    ]
    history.append({"role": "user", "content": "Hello"})
    seen: Counter[int] = Counter()  # messages the provider received per platform turn

    def delete_turn() -> None:
        Message.objects.filter(chat_id=chat_id, position__gte=stored).delete()

    async def after() -> None:
        calls = bench.fake.requests_to("/chat/completions")
        if calls:
            seen[len(calls[-1].json["messages"])] += 1
        await asyncio.to_thread(delete_turn)

    paired = await paired_turns(
        iterations=bench.args.iterations,
        warmup=bench.args.warmup,
        direct=lambda: bench.sdk.chat.completions.create(model=MODEL, messages=history),
        through=lambda: http.post(f"/api/chats/{chat_id}/messages", json=PLAIN),
        before=bench.fake.reset,
        after=after,
    )
    if not report(f"turn on a chat of {stored} stored messages", f"SDK sending the same {stored + 1}", paired):
        return
    print(f"  messages the provider got per platform turn: {dict(sorted(seen.items()))}")
    if bench.fresh_added is None:
        print("  (run the fresh section too for the ratio to a fresh chat)")
        return
    added, fresh = paired.added, bench.fresh_added
    print(ratio_row("added here / added on a fresh chat", added, fresh))
    p50 = statistics.median(added) / statistics.median(fresh)
    print(f"  target: history added <= 1.5x fresh added (p50 {p50:.2f}x: {verdict(p50, 1.5)})")


# --- throughput ---------------------------------------------------------------------------------


@dataclass
class Run:
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)  # ms, successful turns only
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "500", "ReadTimeout", ...
    server_cpu: float | None = None  # seconds of CPU the serving processes used during the run

    @property
    def turns(self) -> int:
        return sum(self.outcomes.values())

    @property
    def per_second(self) -> float:
        return self.outcomes[OK] / self.elapsed if self.elapsed else 0.0

    @property
    def errors(self) -> int:
        return self.turns - self.outcomes[OK]


async def run_workers[T](concurrency: int, jobs: Iterable[T], call: Callable[[T], Awaitable[str]]) -> Run:
    """`concurrency` workers take jobs from one queue until it is empty; each call returns its outcome."""
    run = Run()
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            started = time.perf_counter()
            try:
                outcome = await call(job)
            except Exception as exc:  # counted, not fatal
                outcome = type(exc).__name__
            if outcome == OK:
                run.latencies.append((time.perf_counter() - started) * 1000)
            run.outcomes[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.elapsed = time.perf_counter() - started
    return run


def run_line(label: str, run: Run, direct: Run | None = None) -> str:
    line = f"  {label:<36} {run.per_second:8.1f} turns/s"
    if direct is not None and direct.per_second:
        line += f" = {run.per_second / direct.per_second:6.1%} of direct"
    if run.latencies:
        line += f"   p50 {statistics.median(run.latencies):8.1f} ms   p99 {pct(run.latencies, 0.99):8.1f} ms"
    return line


def turns_for(args: argparse.Namespace, concurrency: int) -> int:
    return max(args.turns, concurrency)


async def direct_throughput(bench: Bench, concurrency: int) -> Run:
    """The same client, at the same concurrency, calling the provider directly: the ceiling to compare with."""
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)  # the SDK's httpx
    async with openai.AsyncOpenAI(
        api_key="bench-key",
        base_url=f"{bench.fake.url}/v1",
        max_retries=0,
        timeout=TIMEOUT,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=TIMEOUT),
    ) as sdk:

        async def call(_: int) -> str:
            await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
            return OK

        await run_workers(concurrency, range(concurrency), call)  # warm-up: one call per worker
        bench.fake.reset()
        run = await run_workers(concurrency, range(turns_for(bench.args, concurrency)), call)
    bench.fake.reset()
    return run


async def platform_throughput(bench: Bench, server: PlatformServer, concurrency: int) -> Run:
    """Each turn on its own chat, so no chat has two turns at once and none grows a history during the run."""
    base_url = server.base_url
    turns = turns_for(bench.args, concurrency)
    chat_ids = await asyncio.to_thread(chats_create, bench.user, concurrency + turns)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=bench.headers, timeout=TIMEOUT, limits=limits) as http:

        async def call(chat_id: int) -> str:
            response = await http.post(f"/api/chats/{chat_id}/messages", json=PLAIN)
            return str(response.status_code)

        await run_workers(concurrency, chat_ids[:concurrency], call)  # warm-up: one turn per worker
        bench.fake.reset()
        pids = server.serving_pids()
        cpu_before = cpu_seconds(pids)
        run = await run_workers(concurrency, chat_ids[concurrency:], call)
        run.server_cpu = cpu_seconds(pids) - cpu_before
    bench.fake.reset()
    return run


def print_throughput(concurrency: int, direct: Run, through: Run, server: str) -> None:
    print(f"throughput at concurrency {concurrency} ({through.turns} turns, after one warm-up turn per worker):")
    print(run_line("provider SDK directly", direct))
    print(run_line(f"platform ({server})", through, direct))
    print(f"  platform responses: {counts(through.outcomes)}")
    if through.server_cpu is not None and through.outcomes[OK]:
        print(f"  server CPU per turn: {through.server_cpu / through.outcomes[OK] * 1000:.1f} ms (user + system)")
    if direct.errors:
        print(f"  direct calls: {counts(direct.outcomes)}")
    if concurrency in (32, 256):
        target = f"  target: zero errors ({verdict(through.errors, 0)})"
        if concurrency == 32 and direct.per_second:
            share = through.per_second / direct.per_second
            target += f"; turns/s >= 40% of direct ({verdict(share, 0.4, at_least=True)})"
        print(target)


# --- main ---------------------------------------------------------------------------------------


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200, help="measured turns per latency section")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured turns before them")
    parser.add_argument("--history", type=int, default=400, help="stored messages in the history section's chat")
    parser.add_argument("--turns", type=int, default=640, help="turns per throughput run (at least one per worker)")
    parser.add_argument("--concurrency", type=int_list, default=[1, 32, 256], help="e.g. 1,32,256")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"any of {','.join(SECTIONS)}")
    parser.add_argument("--server", default="daphne", choices=["daphne", "uvicorn"])
    parser.add_argument("--processes", type=int, default=1, help="uvicorn workers")
    parser.add_argument(
        "--compare-processes", type=int_list, default=None, help="e.g. 1,2: throughput only, once per process count"
    )
    args = parser.parse_args()
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    for processes in args.compare_processes or [args.processes]:
        check_server(args.server, processes)
    return args


async def main() -> None:
    args = parse_args()
    raise_open_files()
    deep_fake_backlog()
    os.environ["BENCH_OPENAI_KEY"] = "bench-key"
    fake = OpenAIWire().start()
    user, key = await asyncio.to_thread(set_up, fake)
    bench = Bench(
        args=args,
        fake=fake,
        sdk=openai.AsyncOpenAI(api_key="bench-key", base_url=f"{fake.url}/v1", max_retries=0),
        user=user,
        headers={"Authorization": f"Bearer {key}"},
    )
    counts_run = args.compare_processes or [args.processes]
    print(
        f"database: {django.conf.settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}; "
        f"redis: {'yes' if django.conf.settings.REDIS_URL else 'no'}; "
        f"server: {args.server}, {' and '.join(map(str, counts_run))} process{'es' if counts_run != [1] else ''}; "
        f"{os.cpu_count()} cores; provider: local fake in the bench process"
    )

    if args.compare_processes:
        await compare_processes(bench)
    else:
        await one_server(bench)
    fake.stop()


async def one_server(bench: Bench) -> None:
    args = bench.args
    with platform(args.server, args.processes) as server:
        async with httpx.AsyncClient(base_url=server.base_url, headers=bench.headers, timeout=TIMEOUT) as http:
            if "fresh" in args.sections:
                await section_fresh(bench, http)
            if "tools" in args.sections:
                await section_tools(bench, http)
            if "history" in args.sections:
                await section_history(bench, http)
            if "v1" in args.sections:
                await section_v1(bench, http)
        if "throughput" in args.sections:
            for concurrency in args.concurrency:
                direct = await direct_throughput(bench, concurrency)
                through = await platform_throughput(bench, server, concurrency)
                print_throughput(concurrency, direct, through, server.describe())


async def compare_processes(bench: Bench) -> None:
    args = bench.args
    direct = {concurrency: await direct_throughput(bench, concurrency) for concurrency in args.concurrency}
    through: dict[int, dict[int, Run]] = {}
    for processes in args.compare_processes:
        with platform(args.server, processes) as server:
            through[processes] = {}
            for concurrency in args.concurrency:
                run = await platform_throughput(bench, server, concurrency)
                through[processes][concurrency] = run
                print_throughput(concurrency, direct[concurrency], run, server.describe())
    first = args.compare_processes[0]
    for concurrency in args.concurrency:
        base = through[first][concurrency].per_second
        figures = ", ".join(f"{n}: {through[n][concurrency].per_second:.1f}" for n in args.compare_processes)
        print(f"turns/s by process count at concurrency {concurrency}: {figures}")
        for processes in args.compare_processes[1:]:
            ratio = through[processes][concurrency].per_second / base if base else float("nan")
            line = f"  {processes} processes / {first}: {ratio:.2f}x"
            if concurrency == 64 and (first, processes) == (1, 2):
                line += f"   target >= 1.7x ({verdict(ratio, 1.7, at_least=True)})"
            print(line)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ServerFailed as exc:
        sys.exit(f"server failed: {exc}")
