"""What the MCP host adds to a tool call, and whether one round's calls really run concurrently.

1. Overhead: the same tool (``echo``) of the same stdio server program, called
   alternately through the host (from another event loop, as the chat engine
   does) and through a bare ``mcp.Client`` in this loop. Prints the median and
   p99 of both and of the difference.
2. Concurrency: wall time of 5 concurrent calls to a 200 ms tool through the
   host (about 200 ms when they run concurrently, about 1 s if serialised).

    .venv/bin/python bench/mcp_overhead.py [--iterations 500]
"""

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")

import django

django.setup()
logging.getLogger().setLevel(logging.WARNING)

from mcp import Client, StdioServerParameters

from mcp_servers.config import ServerSpec
from mcp_servers.host import McpHost

SERVER = [str(ROOT / "tests" / "mcp" / "server.py"), "stdio"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    host = McpHost(listen_for_changes=False)
    spec = ServerSpec(name="bench", transport="stdio", command=sys.executable, args=tuple(SERVER)).with_fingerprint()
    await host.aconfigure([spec])
    await host.await_ready(30)
    try:
        direct_times, host_times = [], []
        async with Client(StdioServerParameters(command=sys.executable, args=SERVER)) as client:
            for i in range(args.warmup + args.iterations):
                started = time.perf_counter()
                await client.call_tool("echo", {"text": "ping"})
                direct = (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                result = await host.acall_tool("bench__echo", {"text": "ping"})
                via_host = (time.perf_counter() - started) * 1000
                assert result.text == "ping", result
                if i >= args.warmup:
                    direct_times.append(direct)
                    host_times.append(via_host)
        added = [h - d for h, d in zip(host_times, direct_times, strict=True)]
        print(f"tool call overhead, {args.iterations} calls after {args.warmup} warm-up (ms):")
        for label, values in (
            ("direct mcp.Client.call_tool", direct_times),
            ("through the host", host_times),
            ("added by the host", added),
        ):
            print(f"  {label:<30} p50 {statistics.median(values):7.3f}   p99 {pct(values, 0.99):7.3f}")

        walls = []
        for _ in range(5):
            started = time.perf_counter()
            results = await asyncio.gather(*(host.acall_tool("bench__slow", {"seconds": 0.2}) for _ in range(5)))
            walls.append((time.perf_counter() - started) * 1000)
            assert not any(r.is_error for r in results), results
        print(
            f"5 concurrent calls to a 200 ms tool: wall time {statistics.median(walls):.0f} ms (median of 5 runs; "
            f"serialised would be ~1000 ms)"
        )
    finally:
        await host.aclose()


if __name__ == "__main__":
    asyncio.run(main())
