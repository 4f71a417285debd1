"""What a run measures: the list of phases, and running one while metering the processes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from load import StreamResult, WrkResult, run_streams, run_wrk
from procs import Meter, Usage
from services import Target

PLAIN = "plain"
STREAM = "stream"
# Kestrel variants that only change logging, and the WORKERS instances, are measured where
# throughput is decided (and the WORKERS ones under every stream load too).
VARIANT_PLAIN_CONCURRENCY = (16, 64)


@dataclass(frozen=True)
class Settings:
    plain_seconds: float
    warmup_seconds: float
    stream_seconds: float
    stream_grace: float
    deltas: int
    interval_ms: int
    plain_concurrency: tuple[int, ...]
    stream_concurrency: tuple[int, ...]
    sse_client: str  # "c" or "python"
    sseload: Path
    load_cpus: set[int] | None
    plain_rounds: int = 1  # each non-streaming phase this many times, targets alternating

    @property
    def ramp_seconds(self) -> float:
        """First streams spread over one stream's length: a steady load from the start."""
        return self.deltas * self.interval_ms / 1000


@dataclass(frozen=True)
class Phase:
    kind: str  # PLAIN or STREAM
    target: str
    route: str  # "messages" or "chat"
    concurrency: int


@dataclass
class Measured:
    phase: Phase
    result: WrkResult | StreamResult
    server: Usage | None  # the target's process tree (the mock itself for "direct")
    upstream: Usage | None  # the mock, behind the target
    wall_s: float

    @property
    def cpu_per_request_us(self) -> float | None:
        """The target's CPU per request of a non-streaming phase; None for a stream phase, an
        unmetered target or no request served."""
        if self.server is None or not isinstance(self.result, WrkResult):
            return None
        requests = self.result.requests
        return self.server.cpu_s * 1e6 / requests if requests else None


def plan(targets: list[Target], settings: Settings, *, kinds: tuple[str, ...],
         variants: set[str], scaling: set[str]) -> list[Phase]:
    """Phases grouped by load, every target back to back, so drift hits all of them alike.

    `variants` run only non-streaming /v1/messages at c=16 and 64; `scaling` (the WORKERS
    instances) also every stream load. With `plain_rounds` above one, each non-streaming load
    is run that many times over, the targets' order reversed every other round, so that a
    moment of noise on the machine lands in one round of one target, not in its only figure."""
    phases: list[Phase] = []
    for kind, levels in ((PLAIN, settings.plain_concurrency),
                         (STREAM, settings.stream_concurrency)):
        if kind not in kinds:
            continue
        rounds = settings.plain_rounds if kind == PLAIN else 1
        for concurrency, round_ in ((c, r) for c in levels for r in range(rounds)):
            for target in targets if round_ % 2 == 0 else targets[::-1]:
                narrow = target.name in variants or target.name in scaling
                if narrow and kind == PLAIN and concurrency not in VARIANT_PLAIN_CONCURRENCY:
                    continue
                if target.name in variants and kind != PLAIN:
                    continue
                for route in target.routes:
                    if narrow and route != "messages":
                        continue
                    phases.append(Phase(kind, target.name, route, concurrency))
    return phases


def median_rounds(rows: list[Measured]) -> list[Measured]:
    """One row per phase: of a phase measured several times (`plain_rounds`), the round with
    the median CPU per request (the lower one of an even count), in the place of its first."""
    rounds: dict[Phase, list[Measured]] = {}
    for row in rows:
        rounds.setdefault(row.phase, []).append(row)

    def cpu(row: Measured) -> float:
        value = row.cpu_per_request_us
        return float("inf") if value is None else value
    return [sorted(measured, key=cpu)[(len(measured) - 1) // 2] for measured in rounds.values()]


def run_phase(phase: Phase, target: Target, upstream: Target, settings: Settings) -> Measured:
    if not target.process.alive():
        raise RuntimeError(f"{target.name} is no longer running:\n{target.process.log_tail()}")
    if phase.kind == PLAIN and settings.warmup_seconds > 0:
        # Fills connection pools and caches; not measured.
        run_wrk(target.base_url, phase.route, concurrency=phase.concurrency,
                seconds=settings.warmup_seconds, api_key=target.api_key,
                cpus=settings.load_cpus)
    server = Meter(target.pid, port=target.port)
    behind = Meter(upstream.pid if target is not upstream else None)
    server.start()
    behind.start()
    started = time.monotonic()
    result: WrkResult | StreamResult
    if phase.kind == PLAIN:
        result = run_wrk(target.base_url, phase.route, concurrency=phase.concurrency,
                         seconds=settings.plain_seconds, api_key=target.api_key,
                         cpus=settings.load_cpus)
    else:
        result = run_streams(target.base_url, phase.route, client=settings.sse_client,
                             sseload=settings.sseload, concurrency=phase.concurrency,
                             seconds=settings.stream_seconds, grace=settings.stream_grace,
                             deltas=settings.deltas, ramp=settings.ramp_seconds,
                             api_key=target.api_key, cpus=settings.load_cpus)
    wall = time.monotonic() - started
    return Measured(phase, result, server.stop(), behind.stop(), wall)
