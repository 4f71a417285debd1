"""Kestrel's CPU per request as a ratio to the floors', measured in short interleaved slices.

    python3 bench/paired.py [--compare floor --compare lean-floor] [--ref REF ...]
                            [--route messages --route chat] [--concurrency 16 ...]
                            [--cycles 12] [--slice-seconds 2] [--access-log]

Why another script: on a shared machine the speed of a CPU drifts over minutes (bench/
RESULTS.md, runs 18 and 20: the same floor at 249 and 453 µs a request within one night), and
`run.py` measures each target for ten seconds, a minute or more from the target it is compared
with. Here every target is loaded in turn for a short slice, forwards then backwards within a
cycle (A B C C B A), so that a drift slower than a cycle lands on every target alike and a
steady one cancels. Each cycle gives each target's CPU per request and Kestrel's ratio to
each floor; the report gives the median of those ratios over the cycles, and the range their
middle half spans, which says how far to trust it.

Every target runs as `run.py --pin` runs it: the proxies on the first CPU, the mock and wrk on
the others; Kestrel with three accounts, a client key and its request log, and the access log
at `info` with `--access-log`. A slice's CPU is read a moment after its load ends
(`SETTLE_SECONDS`), so that the log rows it queued are written within it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from load import ROUTE_PATHS, run_wrk
from machine import describe_machine
from procs import Meter, raise_fd_limit
from services import (
    FLOORS,
    Target,
    build_tools,
    export_ref,
    floor_command,
    start_command,
    start_kestrel,
    start_mock,
)

# Long enough for Kestrel's request log (a tick of 0.5 s) and access log (0.1 s) to write what
# the slice queued, so that each slice carries the whole cost of its requests.
SETTLE_SECONDS = 0.7
WARM_UP_SECONDS = 1


@dataclass(frozen=True)
class Arm:
    """One target on one route: what a slice loads."""

    target: Target
    route: str

    @property
    def name(self) -> str:
        return f"{self.target.name} {self.route}"


@dataclass
class Slice:
    requests: int
    cpu_s: float
    seconds: float
    p50_ms: float


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="append", choices=sorted(FLOORS),
                        help="a floor to measure beside Kestrel (repeatable; default both)")
    parser.add_argument("--ref", action="append", default=[],
                        help="also Kestrel as committed at REF (repeatable)")
    parser.add_argument("--route", action="append", choices=sorted(ROUTE_PATHS),
                        help="Kestrel's routes (repeatable; default both; the floors relay "
                        "/v1/messages only)")
    parser.add_argument("--concurrency", action="append", type=int,
                        help="wrk connections (repeatable; default 16)")
    parser.add_argument("--cycles", type=int, default=12)
    parser.add_argument("--slice-seconds", type=int, default=2)
    parser.add_argument("--access-log", action="store_true",
                        help="run Kestrel with LOG_LEVEL=info (an access log line per request)")
    args = parser.parse_args()
    floors = args.compare or sorted(FLOORS)
    routes = args.route or sorted(ROUTE_PATHS, key=lambda r: r != "messages")
    levels = args.concurrency or [16]
    if args.cycles < 2 or args.slice_seconds < 1 or min(levels) < 1:
        parser.error("at least 2 cycles of slices of at least 1 s, at least 1 connection")
    load_before = os.getloadavg()
    raise_fd_limit()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = {cpus[0]} if len(cpus) > 1 else None
    load_cpus = set(cpus[1:]) if server_cpus else None
    work = Path(tempfile.mkdtemp(prefix="kestrel-paired-"))
    tools = build_tools(work / "build")
    mock = start_mock(tools, work, deltas=10, interval_ms=0, delay_ms=0, cpus=load_cpus)
    targets: list[Target] = [mock]
    try:
        kestrels = [start_kestrel("kestrel", work, mock, request_log=True,
                                  access_log=args.access_log, cpus=server_cpus)]
        kestrels += [start_kestrel(f"kestrel@{ref}", work, mock, request_log=True,
                                   access_log=args.access_log, cpus=server_cpus,
                                   source=export_ref(ref, work / f"src-{i}"))
                     for i, ref in enumerate(args.ref)]
        targets += kestrels
        floor_targets = [start_command(name, floor_command(name), work, mock, cpus=server_cpus)
                         for name in floors]
        targets += floor_targets
        arms = [Arm(k, route) for k in kestrels for route in routes]
        floor_arms = [Arm(f, "messages") for f in floor_targets]
        tables = [_report(arms, floor_arms, _measure(arms + floor_arms, concurrency,
                                                     args.cycles, args.slice_seconds,
                                                     load_cpus), concurrency)
                  for concurrency in levels]
    finally:
        for target in reversed(targets):
            target.process.stop()
    print("\n".join([*describe_machine(load_before),
                     f"- Command: `python3 bench/paired.py {' '.join(sys.argv[1:])}`",
                     f"- {args.cycles} cycles of {args.slice_seconds} s slices per target, "
                     "forwards then backwards; the proxies pinned to the first CPU", "",
                     *tables]))
    return 0


def _measure(arms: list[Arm], concurrency: int, cycles: int, seconds: int,
             load_cpus: set[int] | None) -> dict[str, list[Slice]]:
    """Each arm's slices, two a cycle (its forward and backward turn combined)."""
    for arm in arms:
        run_wrk(arm.target.base_url, arm.route, concurrency=concurrency,
                seconds=WARM_UP_SECONDS, api_key=arm.target.api_key, cpus=load_cpus)
    per_cycle: dict[str, list[Slice]] = {arm.name: [] for arm in arms}
    for cycle in range(cycles):
        turns: dict[str, list[Slice]] = {arm.name: [] for arm in arms}
        for arm in arms + arms[::-1]:
            turns[arm.name].append(_slice(arm, concurrency, seconds, load_cpus))
        for name, pair in turns.items():
            per_cycle[name].append(Slice(sum(s.requests for s in pair),
                                         sum(s.cpu_s for s in pair),
                                         sum(s.seconds for s in pair),
                                         statistics.median(s.p50_ms for s in pair)))
        print(f"c={concurrency}: cycle {cycle + 1}/{cycles} done", file=sys.stderr, flush=True)
    return per_cycle


def _slice(arm: Arm, concurrency: int, seconds: int, load_cpus: set[int] | None) -> Slice:
    target = arm.target
    if not target.process.alive():
        raise RuntimeError(f"{target.name} is no longer running:\n{target.process.log_tail()}")
    meter = Meter(target.pid)
    meter.start()
    result = run_wrk(target.base_url, arm.route, concurrency=concurrency, seconds=seconds,
                     api_key=target.api_key, cpus=load_cpus)
    time.sleep(SETTLE_SECONDS)
    usage = meter.stop()
    assert usage is not None
    if result.errors or not result.requests:
        raise RuntimeError(f"{arm.name}: {result.errors} errors in {result.requests} requests")
    return Slice(result.requests, usage.cpu_s, result.duration_s, result.p50_ms)


def _per_request_us(s: Slice) -> float:
    return s.cpu_s * 1e6 / s.requests


def _p50_ms(s: Slice) -> float:
    return s.p50_ms


def _ratio(own: list[Slice], other: list[Slice], measure: Callable[[Slice], float]) -> str:
    """The median of the cycles' ratios, and the range of their middle half."""
    ratios = sorted(measure(a) / measure(b) for a, b in zip(own, other, strict=True))
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{statistics.median(ratios):.2f}× ({low:.2f}–{high:.2f})"


def _report(arms: list[Arm], floor_arms: list[Arm], slices: dict[str, list[Slice]],
            concurrency: int) -> str:
    """Each arm's medians over the cycles, and its ratios to each floor, cycle by cycle: of
    CPU per request, and at c=1 of the p50 latency too (issue 14's goal there; the mock adds
    about 0.01 ms, so the ratio of what the two proxies add is within a percent of it)."""
    floors = [f.name for f in floor_arms]
    measures: list[tuple[str, Callable[[Slice], float]]] = [("CPU", _per_request_us)]
    if concurrency == 1:
        measures.append(("p50", _p50_ms))
    columns = [(label, measure, floor) for label, measure in measures for floor in floors]
    head = ("| target | route | CPU µs/req | req/s | p50 ms | "
            + " | ".join(f"{label} ÷ {floor.split()[0]} (middle half)"
                         for label, _, floor in columns) + " |")
    lines = [f"### c={concurrency}, median of {len(slices[arms[0].name])} cycles", "", head,
             "|---|---|--:|--:|--:|" + "--:|" * len(columns)]
    for arm in arms + floor_arms:
        own = slices[arm.name]
        cells = [f"{statistics.median(map(_per_request_us, own)):,.1f}",
                 f"{statistics.median(s.requests / s.seconds for s in own):,.0f}",
                 f"{statistics.median(map(_p50_ms, own)):.2f}"]
        cells += ["" if floor == arm.name else _ratio(own, slices[floor], measure)
                  for _, measure, floor in columns]
        lines.append(f"| {arm.target.name} | {arm.route} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
