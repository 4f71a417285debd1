"""Prometheus metrics, counted from the request log rows as they are handed to the writer.

Counting costs a few dictionary updates per request, done for a batch of rows at a time (and
for the rows waiting whenever a snapshot is taken); the text format is only built when
`/metrics` is scraped. With several worker processes each counts its own requests; a scrape
takes a `Snapshot` of every worker, `merge`s them (they travel between processes as JSON:
`to_json`, `from_json`) and renders the sum once. Pure: no I/O, the account list and the clock
are arguments.
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kestrel.domain import Account, RequestLog

# Seconds. From a cached count_tokens (milliseconds) to a long non-streaming generation
# (minutes): Prometheus's defaults stop at 10 s, far short of an LLM answer.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)

Labels = tuple[tuple[str, str], ...]


@dataclass
class Histogram:
    bounds: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def add(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.count += other.count


@dataclass(frozen=True)
class WriterStats:
    queue_depth: int
    written: int
    dropped: int


@dataclass(frozen=True)
class Workers:
    """How many serving processes answer (`up`) out of how many were asked for."""

    up: int
    configured: int


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


_COUNTERS = ("requests", "attempts", "retries", "tokens", "refused", "cost", "proxy_failures")
# Cost is counted in whole nano-dollars: counters travel between workers as integers, and a
# sum of floats would drift.
NANO = 1_000_000_000
_HISTOGRAMS = ("latency", "ttfb")
# Rows observed are counted this many at a time: counted for a batch, a request's share costs
# the server about 3 µs less than counting its row on its own between two requests (pinned,
# bench/RESULTS.md run 11).
COUNT_EVERY = 256
# Bumped when the JSON a worker hands its siblings changes shape: during a rolling restart
# old and new code run side by side, and a snapshot in a shape this code does not know is
# left out of the sum rather than misread.
SNAPSHOT_VERSION = 3


# A row's labels, made once per distinct value and then shared: rows repeat the same few
# routes, statuses, accounts and models, and building the label tuples (and the strings in
# them) anew for every row was most of the cost of counting it. Bounded, unlike the counters
# they key, so that a flood of made-up model names cannot grow them without end.
_LABELS_CACHED = 4096


def _outcome(status: int | None, error_type: str | None) -> str:
    return str(status) if status is not None else error_type or "error"


def _account(account_id: int | None) -> str:
    return str(account_id) if account_id is not None else ""


@functools.lru_cache(maxsize=_LABELS_CACHED)
def _request_labels(route: str, status: int, account_id: int | None) -> Labels:
    return (("route", route), ("status", str(status)), ("account_id", _account(account_id)))


@functools.lru_cache(maxsize=_LABELS_CACHED)
def _attempt_labels(account_id: int, status: int | None, error_type: str | None) -> Labels:
    return (("account_id", str(account_id)), ("outcome", _outcome(status, error_type)))


@functools.lru_cache(maxsize=_LABELS_CACHED)
def _token_labels(account_id: int | None, model: str, kind: str) -> Labels:
    return (("account_id", _account(account_id)), ("model", model), ("kind", kind))


@functools.lru_cache(maxsize=_LABELS_CACHED)
def _model_labels(model: str) -> Labels:
    return (("model", model),)


@functools.lru_cache(maxsize=_LABELS_CACHED)
def _route_labels(route: str) -> Labels:
    return (("route", route),)


class Metrics:
    def __init__(self) -> None:
        self.requests: defaultdict[Labels, int] = defaultdict(int)
        self.attempts: defaultdict[Labels, int] = defaultdict(int)
        self.retries: defaultdict[Labels, int] = defaultdict(int)
        self.tokens: defaultdict[Labels, int] = defaultdict(int)
        # Requests Kestrel answered itself, before any upstream attempt, by reason.
        self.refused: defaultdict[Labels, int] = defaultdict(int)
        self.cost: defaultdict[Labels, int] = defaultdict(int)  # nano-dollars by model
        self.proxy_failures: defaultdict[Labels, int] = defaultdict(int)
        self.latency: defaultdict[Labels, Histogram] = defaultdict(Histogram)
        self.ttfb: defaultdict[Labels, Histogram] = defaultdict(Histogram)
        self._waiting: list[RequestLog] = []  # observed, not counted yet

    def observe(self, row: RequestLog) -> None:
        """One finished client request (called for every request log row): counted with the
        next batch, or the next snapshot, whichever comes first."""
        waiting = self._waiting
        waiting.append(row)
        if len(waiting) >= COUNT_EVERY:
            self._count_waiting()

    def _count_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        for row in waiting:
            self._count(row)

    def _count(self, row: RequestLog) -> None:
        # Unpacked at once, in `RequestLog`'s order: on Python 3.11 a named tuple's fields read
        # one by one take the interpreter's slow way for attributes each time.
        (_, _, route, status, _, account, model, _, error_type, input_tokens, output_tokens,
         cache_read_tokens, cache_creation_tokens, cost_usd, _, latency_ms, ttfb_ms, _, _,
         attempts, _) = row
        self.requests[_request_labels(route, status, account)] += 1
        for attempt in attempts:
            self.attempts[_attempt_labels(attempt.account_id, attempt.status,
                                          attempt.error_type)] += 1
            if attempt.proxy is not None:
                self.proxy_failures[(("proxy", attempt.proxy),
                                     ("kind", _outcome(attempt.status, attempt.error_type)))] += 1
        if len(attempts) > 1:
            self.retries[_route_labels(route)] += len(attempts) - 1
        elif not attempts and error_type:
            self.refused[(("reason", error_type),)] += 1
        model = model or ""
        for kind, count in (("input", input_tokens), ("output", output_tokens),
                            ("cache_read", cache_read_tokens),
                            ("cache_creation", cache_creation_tokens)):
            if count:
                self.tokens[_token_labels(account, model, kind)] += count
        if cost_usd:
            self.cost[_model_labels(model)] += round(cost_usd * NANO)
        labels = _route_labels(route)
        self.latency[labels].observe(latency_ms / 1000)
        if ttfb_ms is not None:
            self.ttfb[labels].observe(ttfb_ms / 1000)

    def add(self, other: Metrics) -> None:
        """Fold another process's counts into these (its rows still waiting are counted
        first)."""
        other._count_waiting()
        for name in _COUNTERS:
            mine: defaultdict[Labels, int] = getattr(self, name)
            for labels, value in getattr(other, name).items():
                mine[labels] += value
        for name in _HISTOGRAMS:
            histograms: defaultdict[Labels, Histogram] = getattr(self, name)
            for labels, histogram in getattr(other, name).items():
                histograms[labels].add(histogram)

    def snapshot(self, writer: WriterStats, active_streams: int) -> Snapshot:
        """A copy of everything observed until now, with the gauges that add up across
        workers."""
        copy = Metrics()
        copy.add(self)
        return Snapshot(copy, writer, active_streams)


@dataclass(frozen=True)
class Snapshot:
    """One process's part of `/metrics`: its counts and its log writer and stream gauges."""

    metrics: Metrics
    writer: WriterStats
    active_streams: int

    def retired(self) -> Snapshot:
        """What stays of a process that has stopped: its counters; its gauges are gone."""
        return replace(self, writer=replace(self.writer, queue_depth=0), active_streams=0)


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots, as one process would have counted it all."""
    total = Metrics()
    queue_depth = written = dropped = active = 0
    for snapshot in snapshots:
        total.add(snapshot.metrics)
        queue_depth += snapshot.writer.queue_depth
        written += snapshot.writer.written
        dropped += snapshot.writer.dropped
        active += snapshot.active_streams
    return Snapshot(total, WriterStats(queue_depth, written, dropped), active)


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot as plain JSON values (label sets become lists of pairs)."""
    m = snapshot.metrics
    return {
        "version": SNAPSHOT_VERSION,
        **{name: [[list(map(list, labels)), value] for labels, value in getattr(m, name).items()]
           for name in _COUNTERS},
        **{name: [[list(map(list, labels)), h.counts, h.total, h.count]
                  for labels, h in getattr(m, name).items()] for name in _HISTOGRAMS},
        "writer": [snapshot.writer.queue_depth, snapshot.writer.written, snapshot.writer.dropped],
        "active_streams": snapshot.active_streams,
    }


def from_json(data: Any) -> Snapshot:
    """The snapshot `to_json` made. Raises ValueError for anything else: another version's
    shape, or bytes that are not a snapshot at all."""
    try:
        if data["version"] != SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {data['version']!r}, not {SNAPSHOT_VERSION}")
        metrics = Metrics()
        for name in _COUNTERS:
            counter: defaultdict[Labels, int] = getattr(metrics, name)
            for labels, value in data[name]:
                counter[_labels(labels)] += _whole(value)
        for name in _HISTOGRAMS:
            histograms: defaultdict[Labels, Histogram] = getattr(metrics, name)
            for labels, counts, total, count in data[name]:
                if len(counts) != len(LATENCY_BUCKETS) + 1:
                    raise ValueError("histogram buckets differ")
                histograms[_labels(labels)].add(Histogram(counts=[_whole(c) for c in counts],
                                                          total=float(total),
                                                          count=_whole(count)))
        queue_depth, written, dropped = map(_whole, data["writer"])
        return Snapshot(metrics, WriterStats(queue_depth, written, dropped),
                        _whole(data["active_streams"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a metrics snapshot ({type(exc).__name__}: {exc})") from None


def _labels(pairs: Any) -> Labels:
    return tuple((str(name), str(value)) for name, value in pairs)


def _whole(value: Any) -> int:
    if type(value) is not int:
        raise ValueError(f"{value!r} is not a count")
    return value


def render(snapshot: Snapshot, accounts: Iterable[Account], workers: Workers, now: float) -> str:
    """The Prometheus text format of a (merged) snapshot, the accounts as this process sees
    them, and the worker count."""
    counted = snapshot.metrics
    writer = snapshot.writer
    lines: list[str] = []

    def family(name: str, kind: str, help_: str,
               samples: Iterable[tuple[Labels, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{_format(labels)} {_number(value)}" for labels, value in samples)

    family("kestrel_requests_total", "counter", "Client requests by route, status, account.",
           counted.requests.items())
    family("kestrel_upstream_attempts_total", "counter",
           "Upstream attempts by account and outcome (HTTP status or error kind).",
           counted.attempts.items())
    family("kestrel_retries_total", "counter",
           "Attempts beyond the first, moved to another account.", counted.retries.items())
    family("kestrel_tokens_total", "counter", "Tokens by account, model and kind.",
           counted.tokens.items())
    family("kestrel_proxy_failures_total", "counter",
           "Attempts an egress proxy failed, by proxy (scheme, host and port) and kind "
           "(proxy_unreachable, proxy_refused, proxy_auth).", counted.proxy_failures.items())
    family("kestrel_cost_usd_total", "counter",
           "Dollars spent by model, at the price table's rates.",
           [(labels, value / NANO) for labels, value in counted.cost.items()])
    family("kestrel_refused_total", "counter",
           "Requests Kestrel answered itself before any upstream attempt, by reason (a key's "
           "controls, an invalid body, no account to serve).", counted.refused.items())
    accounts = list(accounts)
    family("kestrel_account_up", "gauge",
           "1 when the account can serve now, else 0, with its status.",
           [((("account_id", str(a.id)), ("account", a.name),
              ("status", a.status(now).value)),
             1.0 if a.usable(now) else 0.0) for a in accounts])
    family("kestrel_account_cooldown_seconds", "gauge",
           "Seconds until a cooling account returns (0 when not cooling).",
           [((("account_id", str(a.id)), ("account", a.name)),
             max(0.0, (a.cooldown_until or now) - now)) for a in accounts])
    family("kestrel_active_streams", "gauge", "Streams being relayed now.",
           [((), float(snapshot.active_streams))])
    family("kestrel_workers", "gauge",
           "Serving processes: up (answering now) and configured (WORKERS, 1 without it).",
           [((("state", "up"),), float(workers.up)),
            ((("state", "configured"),), float(workers.configured))])
    family("kestrel_log_queue_depth", "gauge", "Request log rows waiting to be written.",
           [((), float(writer.queue_depth))])
    family("kestrel_log_rows_written_total", "counter", "Request log rows written.",
           [((), float(writer.written))])
    family("kestrel_log_rows_dropped_total", "counter",
           "Request log rows dropped (queue full or database unwritable).",
           [((), float(writer.dropped))])
    for name, help_, histograms in (
        ("kestrel_request_duration_seconds", "Client request latency.", counted.latency),
        ("kestrel_time_to_first_byte_seconds", "Time to the first byte from upstream.",
         counted.ttfb),
    ):
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} histogram")
        for labels, histogram in histograms.items():
            cumulative = 0
            for bound, count in zip([*histogram.bounds, float("inf")], histogram.counts,
                                    strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                lines.append(f"{name}_bucket{_format((*labels, ('le', le)))} {cumulative}")
            lines.append(f"{name}_sum{_format(labels)} {_number(histogram.total)}")
            lines.append(f"{name}_count{_format(labels)} {histogram.count}")
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
