"""How many request log rows a second one Kestrel process writes, on SQLite and on PostgreSQL.

    python3 bench/log_rows.py [--rate 5000] [--seconds 10] [--burst 50000]
                              [--database-url postgresql://...]

The rows go through the same path as in the server: `LogWriter` (batches off the request path)
into `RequestLogStore` (one transaction per batch; on PostgreSQL, multi-row INSERTs). Two
measurements per engine:

- steady: `--rate` rows a second submitted for `--seconds` (every 10 ms a slice, as requests
  would); sustained when every row is written by the end and the queue never grew past two
  batches' worth of seconds;
- burst: `--burst` rows submitted at once, and the rows a second at which they drain.

PostgreSQL is a throwaway cluster this script starts (Debian's server, as the tests do), unless
`--database-url` names one; its CPU is reported apart from this process's. Print the machine's
load average before and after, as every bench here does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kestrel.domain import Attempt, RequestLog  # noqa: E402
from kestrel.store.database import Database  # noqa: E402
from kestrel.store.log_writer import LogWriter  # noqa: E402
from kestrel.store.request_logs import RequestLogStore  # noqa: E402

TICK = 0.01


def row(n: int) -> RequestLog:
    return RequestLog(ts=time.time(), request_id=f"req_{n:024x}", route="/v1/messages",
                      status=200, key_id=1, account_id=1 + n % 3, model="claude-sonnet-4-5",
                      stream=n % 2 == 0, input_tokens=120, output_tokens=480, latency_ms=812.5,
                      ttfb_ms=301.2, client="10.0.0.7", user_agent="claude-cli/2.0.14",
                      attempts=(Attempt(1 + n % 3, 200, None, 810.0),))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def steady(target: str, rate: int, seconds: float,
                 server_cpu: Callable[[], float]) -> dict[str, float]:
    db = await Database.open(target)
    writer = LogWriter(RequestLogStore(db, instance="bench"))
    await writer.start()
    loop = asyncio.get_running_loop()
    per_tick = rate * TICK
    started, cpu_started, server_started = loop.time(), cpu(), server_cpu()
    submitted, deepest, owed = 0, 0, 0.0
    try:
        while (elapsed := loop.time() - started) < seconds:
            owed += per_tick
            while owed >= 1:
                writer.submit(row(submitted))
                submitted += 1
                owed -= 1
            deepest = max(deepest, writer.queue_depth)
            await asyncio.sleep(max(0.0, started + (submitted / rate) - loop.time()))
        deadline = loop.time() + 5
        # The writer's counters have no event to wait on: look at them every 10 ms.
        while writer.written + writer.dropped < submitted and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        elapsed = loop.time() - started
        # Before the connections close: a server process that exits takes its counts along.
        server = server_cpu() - server_started
    finally:
        await writer.close()
        await db.close()
    written = max(1, writer.written)
    return {"submitted": submitted, "written": writer.written, "dropped": writer.dropped,
            "rows_per_s": writer.written / elapsed, "deepest_queue": deepest,
            "cpu_us_per_row": (cpu() - cpu_started) / written * 1e6,
            "server_us_per_row": server / written * 1e6}


async def burst(target: str, rows: int, server_cpu: Callable[[], float]) -> dict[str, float]:
    db = await Database.open(target)
    writer = LogWriter(RequestLogStore(db, instance="bench"), max_queue=rows + 1)
    await writer.start()
    loop = asyncio.get_running_loop()
    batch = [row(n) for n in range(rows)]
    started, cpu_started, server_started = loop.time(), cpu(), server_cpu()
    try:
        for entry in batch:
            writer.submit(entry)
        while writer.written + writer.dropped < rows:  # noqa: ASYNC110 (as above)
            await asyncio.sleep(0.005)
        elapsed = loop.time() - started
        server = server_cpu() - server_started
    finally:
        await writer.close()
        await db.close()
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed,
            "cpu_us_per_row": (cpu() - cpu_started) / rows * 1e6,
            "server_us_per_row": server / rows * 1e6}


def postgres_cpu(pid_dir: Path) -> float:
    """CPU seconds of every process of the throwaway server (its postmaster's children)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "cwd").resolve() != pid_dir:
                continue
            fields = (proc / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=50_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cluster = None
    with tempfile.TemporaryDirectory() as scratch:
        targets = {"sqlite": str(Path(scratch) / "bench.db")}
        if args.database_url:
            targets["postgresql"] = args.database_url
        else:
            from support.postgres import start_cluster
            cluster = start_cluster()
            targets["postgresql"] = cluster.database()
        try:
            print("| engine | test | rows/s | written / submitted | deepest queue | "
                  "Kestrel CPU µs/row | server CPU µs/row |")
            print("|---|---|--:|--:|--:|--:|--:|")
            for engine, target in targets.items():
                def server_cpu(engine: str = engine) -> float:
                    if engine == "sqlite" or cluster is None:
                        return 0.0  # in-process, or a server this script cannot see
                    return postgres_cpu(cluster.data)
                result = asyncio.run(steady(target, args.rate, args.seconds, server_cpu))
                print(f"| {engine} | steady {args.rate:,}/s for {args.seconds:g} s | "
                      f"{result['rows_per_s']:,.0f} | {result['written']:,.0f} / "
                      f"{result['submitted']:,.0f} | {result['deepest_queue']:,.0f} | "
                      f"{result['cpu_us_per_row']:.1f} | {result['server_us_per_row']:.1f} |")
                drained = asyncio.run(burst(target, args.burst, server_cpu))
                print(f"| {engine} | burst of {args.burst:,} | {drained['rows_per_s']:,.0f} | "
                      f"{args.burst:,} / {args.burst:,} | — | {drained['cpu_us_per_row']:.1f} | "
                      f"{drained['server_us_per_row']:.1f} |")
        finally:
            if cluster is not None:
                cluster.close()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
