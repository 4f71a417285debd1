"""Instructions per request, counted by valgrind: a figure the machine's load barely moves.

    python3 bench/instructions.py [--ref REF ...] [--compare floor|lean-floor ...]
                                  [--route messages|chat] [--requests N] [--cache-model]

CPU time per request on a shared machine moves by several percent between runs (bench/
RESULTS.md, run 11), more than most single changes save. Callgrind counts the instructions a
process executes instead, whatever else the machine does. Each target (this checkout, each
`--ref`, each `--compare` floor) runs twice under callgrind, as `run.py` starts it (Kestrel with
three accounts, a client key, request log on, access log at `info`; a floor of
`floor_servers.py`, which relays `/v1/messages` only), and serves `requests` / 6 requests in one
run and `requests` in the other, from eight keep-alive connections, after a warm-up; the
difference between the two runs' counts, divided by the difference in requests, is a request's
count with start-up and shutdown taken out. Two runs of the same code agree to about 0.2 % on a
quiet machine; on a busy one they have differed by 0.8 %.

What it does not say: instructions are not time. C code in tight loops (regular expressions,
`bytes.translate`) runs many instructions per nanosecond, the interpreter's own fewer, and
cache misses cost nothing here. The periodic work (log batches, the key meter's sync) is shared
among the requests that arrive meanwhile, so a loaded machine still moves the count a little.
Compare two versions of the same Python code with it, then confirm with `run.py`. Needs
valgrind (Debian: `apt-get install valgrind`); a target takes about a minute.

`--cache-model` runs cachegrind instead, simulating the first-level caches and the branch
predictors as the host's are sized, and adds a model of time that the load does not move
either: each instruction a cycle, each first-level miss `L1_MISS_CYCLES` more, each
mispredicted branch `MISPREDICT_CYCLES` more. A larger program misses more often per
instruction than a small one doing similar work, which instructions alone cannot show. The
weights are round figures of the kind processor manuals give (a miss served by the second
level, a pipeline refilled), not measured here: trust the model's ratios between targets more
than its cycles. A target takes about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from load import ROUTE_BODIES, ROUTE_PATHS
from procs import Process, free_port, raise_fd_limit, wait_until_ready
from services import (
    FLOORS,
    REPO_DIR,
    Target,
    build_tools,
    export_ref,
    floor_argv,
    start_kestrel,
    start_mock,
)

CONNECTIONS = 8
WARM_UP_PER_CONNECTION = 50
# Python under callgrind starts about fifty times slower than natively.
READY_SECONDS = 600.0
# The cache model's weights (see the module docstring).
L1_MISS_CYCLES = 10
MISPREDICT_CYCLES = 15
# Cachegrind's events, by the names its output file gives them, summed into the model's terms.
INSTRUCTIONS = ("Ir",)
L1_MISSES = ("I1mr", "D1mr", "D1mw")
MISPREDICTS = ("Bcm", "Bim")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", action="append", default=[],
                        help="a committed version to count beside this checkout (repeatable)")
    parser.add_argument("--compare", action="append", default=[], choices=sorted(FLOORS),
                        help="a floor to count beside Kestrel (repeatable; /v1/messages only)")
    parser.add_argument("--route", choices=sorted(ROUTE_PATHS), default="messages")
    parser.add_argument("--requests", type=int, default=2400,
                        help="requests in the longer run (the shorter serves a sixth)")
    parser.add_argument("--cache-model", action="store_true",
                        help="simulate the caches and branch predictors, and model cycles")
    args = parser.parse_args()
    if args.compare and args.route != "messages":
        parser.error("the floors relay /v1/messages only")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("instructions: valgrind is not installed (sudo apt-get install valgrind)")
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="kestrel-instructions-"))
    tools = build_tools(work / "build")
    mock = start_mock(tools, work, deltas=10, interval_ms=0, delay_ms=0, cpus=None)
    try:
        targets: list[tuple[str, Path | None]] = [("this checkout", None)]
        targets += [(ref, export_ref(ref, work / f"src-{ref}")) for ref in args.ref]
        targets += [(floor, None) for floor in args.compare]
        short = args.requests // 6
        if args.cache_model:
            print(f"| {args.route}, per request | instructions | first-level misses | "
                  "mispredicted branches | modeled cycles |\n|---|--:|--:|--:|--:|")
        else:
            print(f"| {args.route} | instructions per request |\n|---|--:|")
        cycles: dict[str, float] = {}
        for name, source in targets:
            (few, few_served), (many, many_served) = [
                _count(valgrind, work, mock, name, source, args.route, requests,
                       f"{name}-{requests}", cache_model=args.cache_model)
                for requests in (short, args.requests)]
            each = {event: (many[event] - few.get(event, 0)) / (many_served - few_served)
                    for event in many}
            if not args.cache_model:
                print(f"| {name} | {each['Ir']:,.0f} |", flush=True)
                continue
            terms = [sum(each[event] for event in group)
                     for group in (INSTRUCTIONS, L1_MISSES, MISPREDICTS)]
            cycles[name] = terms[0] + L1_MISS_CYCLES * terms[1] + MISPREDICT_CYCLES * terms[2]
            print(f"| {name} | " + " | ".join(f"{term:,.0f}" for term in terms)
                  + f" | {cycles[name]:,.0f} |", flush=True)
        for floor in args.compare if args.cache_model else ():
            print(f"modeled cycles of this checkout ÷ {floor}'s: "
                  f"{cycles['this checkout'] / cycles[floor]:.2f}")
    finally:
        mock.process.stop()
    return 0


def _count(valgrind: str, work: Path, mock: Target, name: str, source: Path | None,
           route: str, requests: int, label: str, *,
           cache_model: bool) -> tuple[dict[str, int], int]:
    """The target's events (every thread) over its whole life, serving about `requests`, and
    how many it served (a whole number per connection). The events are callgrind's `Ir`
    (instructions) alone, or cachegrind's with `cache_model`."""
    tool = "cachegrind" if cache_model else "callgrind"
    out = work / re.sub(r"[^\w.-]", "_", f"{tool}-{label}.out")
    under = [valgrind, f"--tool={tool}", f"--{tool}-out-file={out}"]
    if cache_model:
        under[2:2] = ["--cache-sim=yes", "--branch-sim=yes"]
    if name in FLOORS:
        port = free_port()
        process = Process(out.stem, [*under, *floor_argv(name), "--port", str(port),
                                     "--upstream", mock.base_url],
                          log_path=work / f"{out.stem}.log")
        wait_until_ready(f"http://127.0.0.1:{port}/", process, timeout=READY_SECONDS)
        api_key = "unused"
    else:
        target = start_kestrel(out.stem, work, mock, request_log=True, access_log=True,
                               cpus=None, source=source or REPO_DIR, under=under,
                               ready_seconds=READY_SECONDS)
        process, api_key = target.process, target.api_key
        port = int(target.base_url.rsplit(":", 1)[1])
    body = ROUTE_BODIES[route].encode()
    head = (f"POST {ROUTE_PATHS[route]} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"content-type: application/json\r\nx-api-key: {api_key}\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-length: {len(body)}\r\n\r\n")
    asyncio.run(_load(port, head.encode() + body, CONNECTIONS * WARM_UP_PER_CONNECTION))
    served = asyncio.run(_load(port, head.encode() + body, requests))
    process.popen.send_signal(signal.SIGINT)  # an orderly exit writes callgrind's file
    process.popen.wait(READY_SECONDS)
    process.stop()
    return _totals(out.read_bytes()), served


def _totals(output: bytes) -> dict[str, int]:
    """Each event's total, from a callgrind or cachegrind output file: the `events:` line names
    them, the `totals:` (callgrind) or `summary:` (cachegrind) line counts them."""
    events = re.search(rb"^events: (.+)$", output, re.MULTILINE)
    counts = re.search(rb"^(?:totals|summary): ([\d ]+)$", output, re.MULTILINE)
    if events is None or counts is None:
        raise RuntimeError("valgrind wrote no totals")
    return dict(zip(events.group(1).decode().split(), map(int, counts.group(1).split()),
                    strict=True))


async def _load(port: int, request: bytes, requests: int) -> int:
    """`requests` requests (rounded down to a whole number per connection) over CONNECTIONS
    keep-alive connections, each answered 200; how many that was."""
    async def one_connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"answered {head.partition(b' ')[2][:3]!r}")
            length = re.search(rb"(?im)^content-length: *(\d+)", head)
            if length is None:
                raise RuntimeError("an answer without content-length")
            await reader.readexactly(int(length.group(1)))
        writer.close()
    each = requests // CONNECTIONS
    await asyncio.gather(*(one_connection(each) for _ in range(CONNECTIONS)))
    return each * CONNECTIONS


if __name__ == "__main__":
    sys.exit(main())
