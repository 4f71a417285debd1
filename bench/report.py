"""The tables: every phase with its ratios to the direct run, and the issue's targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from load import StreamResult, WrkResult
from phases import PLAIN, STREAM, Measured

DIRECT = "direct"
KESTREL = "kestrel"
NOLOG = "kestrel-nolog"
ACCESSLOG = "kestrel-accesslog"
POSTGRES = "kestrel-pg"
CONTROLS = "kestrel-controls"
WORKERS_PREFIX = "kestrel-w"


def workers_target(count: int) -> str:
    """The name of the Kestrel target started with WORKERS=count."""
    return f"{WORKERS_PREFIX}{count}"


def percentile(samples: Sequence[int], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return float(ordered[rank - 1])


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:  # None or nan
        return "—"
    return f"{value:,.{digits}f}"


def _signed(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "—"
    return f"{value:+,.{digits}f}"


def _pct(cpu_s: float | None, wall_s: float) -> str:
    return "—" if cpu_s is None or wall_s <= 0 else f"{100 * cpu_s / wall_s:.0f}"


@dataclass
class _Stream:
    """A stream phase's percentiles, in milliseconds."""

    ttfb50: float
    ttfb99: float
    ttlb50: float
    ttlb99: float

    @classmethod
    def of(cls, r: StreamResult) -> _Stream:
        return cls(percentile(r.ttfb_us, 50) / 1000, percentile(r.ttfb_us, 99) / 1000,
                   percentile(r.ttlb_us, 50) / 1000, percentile(r.ttlb_us, 99) / 1000)


class Report:
    def __init__(self, rows: list[Measured]) -> None:
        self.rows = rows

    def find(self, kind: str, target: str, concurrency: int,
             route: str = "messages") -> Measured | None:
        for row in self.rows:
            p = row.phase
            if (p.kind, p.target, p.concurrency, p.route) == (kind, target, concurrency, route):
                return row
        return None

    def _baseline(self, row: Measured) -> Measured | None:
        return self.find(row.phase.kind, DIRECT, row.phase.concurrency)

    # -- plain requests --------------------------------------------------------------------

    def plain_table(self) -> list[str]:
        lines = [
            "| target | route | c | req/s | × direct | p50 ms | p90 ms | p99 ms | added p50 ms "
            "| added p99 ms | CPU µs/req | switches/req | peak RSS MB | server CPU % "
            "| mock CPU % | wrk CPU % | errors |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in self.rows:
            if row.phase.kind != PLAIN:
                continue
            r = row.result
            assert isinstance(r, WrkResult)
            base = self._baseline(row)
            b = base.result if base is not None and base is not row else None
            assert b is None or isinstance(b, WrkResult)
            cpu = row.server.cpu_s if row.server else None
            lines.append("| " + " | ".join([
                row.phase.target, row.phase.route, str(row.phase.concurrency),
                _num(r.rps, 0), f"{r.rps / b.rps:.3f}" if b and b.rps else "—",
                _num(r.p50_ms), _num(r.p90_ms), _num(r.p99_ms),
                _signed(r.p50_ms - b.p50_ms) if b else "—",
                _signed(r.p99_ms - b.p99_ms) if b else "—",
                _num(row.cpu_per_request_us, 1),
                _num(row.server.switches / r.requests if row.server and r.requests else None,
                     2),
                _num(row.server.peak_rss_mb if row.server else None, 1),
                _pct(cpu, row.wall_s),
                _pct(row.upstream.cpu_s if row.upstream else None, row.wall_s),
                _pct(r.loadgen_cpu_s, row.wall_s),
                str(r.errors),
            ]) + " |")
        return lines

    # -- streams ---------------------------------------------------------------------------

    def stream_table(self) -> list[str]:
        lines = [
            "| target | route | streams | intact / started | TTFB p50 ms | TTFB p99 ms "
            "| added TTFB p50 | added TTFB p99 | TTLB p50 ms | TTLB p99 ms | added TTLB p50 "
            "| added TTLB p99 | CPU ms/stream | peak RSS MB | server CPU % | mock CPU % "
            "| client CPU % |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for row in self.rows:
            if row.phase.kind != STREAM:
                continue
            r = row.result
            assert isinstance(r, StreamResult)
            s = _Stream.of(r)
            base = self._baseline(row)
            b = _Stream.of(base.result) if (
                base is not None and base is not row and isinstance(base.result, StreamResult)
            ) else None
            cpu = row.server.cpu_s if row.server else None
            lines.append("| " + " | ".join([
                row.phase.target, row.phase.route, str(row.phase.concurrency),
                f"{r.intact} / {r.started}" + ("" if r.intact == r.started else " ⚠"),
                _num(s.ttfb50), _num(s.ttfb99),
                _signed(s.ttfb50 - b.ttfb50) if b else "—",
                _signed(s.ttfb99 - b.ttfb99) if b else "—",
                _num(s.ttlb50, 1), _num(s.ttlb99, 1),
                _signed(s.ttlb50 - b.ttlb50) if b else "—",
                _signed(s.ttlb99 - b.ttlb99) if b else "—",
                _num(cpu * 1e3 / r.intact if cpu is not None and r.intact else None, 2),
                _num(row.server.peak_rss_mb if row.server else None, 1),
                _pct(cpu, row.wall_s),
                _pct(row.upstream.cpu_s if row.upstream else None, row.wall_s),
                _pct(r.loadgen_cpu_s, row.wall_s),
            ]) + " |")
        return lines

    def stream_problems(self) -> list[str]:
        lines = []
        for row in self.rows:
            r = row.result
            if isinstance(r, StreamResult) and (r.broken or r.unfinished):
                lines.append(f"- {row.phase.target} {row.phase.route} × {row.phase.concurrency}: "
                             f"{r.broken} broken, {r.unfinished} unfinished; "
                             + ", ".join(f"{k} ({v})" for k, v in r.problems.items()))
        return lines

    # -- the targets ---------------------------------------------------------------

    def _plain(self, target: str, c: int, route: str = "messages") -> WrkResult | None:
        row = self.find(PLAIN, target, c, route)
        return row.result if row and isinstance(row.result, WrkResult) else None

    def _cpu_per_req_us(self, target: str, c: int, route: str = "messages") -> float | None:
        row = self.find(PLAIN, target, c, route)
        return row.cpu_per_request_us if row is not None else None

    def _added_stream(self, target: str, c: int) -> tuple[_Stream, StreamResult] | None:
        row, base = self.find(STREAM, target, c), self.find(STREAM, DIRECT, c)
        if row is None or base is None:
            return None
        assert isinstance(row.result, StreamResult) and isinstance(base.result, StreamResult)
        s, b = _Stream.of(row.result), _Stream.of(base.result)
        return _Stream(s.ttfb50 - b.ttfb50, s.ttfb99 - b.ttfb99, s.ttlb50 - b.ttlb50,
                       s.ttlb99 - b.ttlb99), row.result

    def targets_table(self, compare: Sequence[str]) -> list[str]:
        """The issue's targets next to Kestrel's figures (and the compared proxies')."""
        names = [KESTREL, *compare]
        header = "| target (issue 7) | goal | " + " | ".join(names) + " | met |"
        lines = [header, "|---|--:|" + "--:|" * len(names) + ":-:|"]

        def add(label: str, goal: str, value: Callable[[str], float | None],
                ok: Callable[[float], bool] | None,
                fmt: Callable[[float], str] = lambda v: _num(v)) -> None:
            values = [value(n) for n in names]
            mine = values[0]
            met = "—" if mine is None or ok is None else ("yes" if ok(mine) else "**no**")
            cells = [fmt(v) if v is not None else "—" for v in values]
            lines.append(f"| {label} | {goal} | " + " | ".join(cells) + f" | {met} |")

        def added(c: int, field: str) -> Callable[[str], float | None]:
            def get(name: str) -> float | None:
                mine, base = self._plain(name, c), self._plain(DIRECT, c)
                if mine is None or base is None:
                    return None
                return float(getattr(mine, field) - getattr(base, field))
            return get

        add("plain, c=1: added p50 (ms)", "≤ 0.5", added(1, "p50_ms"), lambda v: v <= 0.5)
        add("plain, c=1: added p99 (ms)", "≤ 2", added(1, "p99_ms"), lambda v: v <= 2)
        add("plain, c=16: requests/s", "≥ 3,000",
            lambda n: (r.rps if (r := self._plain(n, 16)) else None), lambda v: v >= 3000,
            lambda v: _num(v, 0))
        add("plain, c=16: CPU per request (µs)", "≤ 300",
            lambda n: self._cpu_per_req_us(n, 16), lambda v: v <= 300, lambda v: _num(v, 0))

        def chat_ratio(name: str) -> float | None:
            chat, msgs = self._cpu_per_req_us(name, 16, "chat"), self._cpu_per_req_us(name, 16)
            return chat / msgs if chat and msgs else None
        add("chat/completions CPU ÷ messages CPU, c=16", "≤ 1.3×", chat_ratio,
            lambda v: v <= 1.3, lambda v: f"{v:.2f}×")

        def stream_field(c: int, field: str) -> Callable[[str], float | None]:
            def get(name: str) -> float | None:
                got = self._added_stream(name, c)
                return float(getattr(got[0], field)) if got else None
            return get

        add("100 streams: added TTFB p50 (ms)", "≤ 2", stream_field(100, "ttfb50"),
            lambda v: v <= 2)
        add("100 streams: added TTFB p99 (ms)", "≤ 10", stream_field(100, "ttfb99"),
            lambda v: v <= 10)
        add("100 streams: added duration p50 (ms, to last byte)", "≤ 5",
            stream_field(100, "ttlb50"), lambda v: v <= 5)

        def complete(name: str) -> float | None:
            got = self._added_stream(name, 1000)
            if not got:
                return None
            r = got[1]
            return r.intact / r.started if r.started else None
        add("1,000 streams: complete and intact", "100 %", complete, lambda v: v == 1.0,
            lambda v: f"{100 * v:.1f} %")
        add("1,000 streams: added TTFB p50 (ms)", "≤ 100", stream_field(1000, "ttfb50"),
            lambda v: v <= 100, lambda v: _num(v, 1))
        add("1,000 streams: added TTFB p99 (ms)", "≤ 1,000", stream_field(1000, "ttfb99"),
            lambda v: v <= 1000, lambda v: _num(v, 1))

        def rss(name: str) -> float | None:
            row = self.find(STREAM, name, 1000)
            return row.server.peak_rss_mb if row and row.server else None
        add("1,000 streams: peak RSS (MB)", "≤ 120", rss, lambda v: v <= 120,
            lambda v: _num(v, 1))

        def log_cost(name: str) -> float | None:
            if name != KESTREL:
                return None
            on, off = self._plain(KESTREL, 16), self._plain(NOLOG, 16)
            return 1 - on.rps / off.rps if on and off and off.rps else None
        add("request log on: throughput lost vs off, c=16", "≤ 10 %", log_cost,
            lambda v: v <= 0.10, lambda v: f"{100 * v:.1f} %")

        def access_log_cost(name: str) -> float | None:
            if name != KESTREL:
                return None
            off, on = self._plain(KESTREL, 16), self._plain(ACCESSLOG, 16)
            return 1 - on.rps / off.rps if on and off and off.rps else None
        add("access log on (LOG_LEVEL=info): throughput lost vs off, c=16", "(none)",
            access_log_cost, None, lambda v: f"{100 * v:.1f} %")
        return lines

    # -- WORKERS (issue 13) ----------------------------------------------------------------

    def workers_table(self, counts: Sequence[int]) -> list[str]:
        """Each WORKERS instance at the loads that decide throughput, the issue's ratios of the
        last count to the first, and how the kernel spread the load over the workers."""
        names = [workers_target(n) for n in counts]

        def rps(name: str, c: int) -> float | None:
            return r.rps if (r := self._plain(name, c)) else None

        def stream(name: str, field: str) -> float | None:
            got = self._added_stream(name, 1000)
            return float(getattr(got[0], field)) if got else None

        def complete(name: str) -> str:
            got = self._added_stream(name, 1000)
            return f"{got[1].intact} / {got[1].started}" if got else "—"

        lines = ["| WORKERS | req/s c=16 | req/s c=64 | CPU µs/req c=16 | CPU µs/req c=64 "
                 "| 1,000 streams intact | added TTFB p50 ms | added TTFB p99 ms |",
                 "|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for n, name in zip(counts, names, strict=True):
            lines.append("| " + " | ".join([
                str(n), _num(rps(name, 16), 0), _num(rps(name, 64), 0),
                _num(self._cpu_per_req_us(name, 16), 0), _num(self._cpu_per_req_us(name, 64), 0),
                complete(name), _num(stream(name, "ttfb50"), 1),
                _num(stream(name, "ttfb99"), 1)]) + " |")
        first, last = names[0], names[-1]

        def ratio(value: Callable[[str], float | None]) -> float | None:
            a, b = value(last), value(first)
            return a / b if a is not None and b else None

        def goal(label: str, wanted: str, shown: str, met: bool | None) -> str:
            verdict = "—" if met is None else "yes" if met else "**no**"
            return f"| {label} | {wanted} | {shown} | {verdict} |"

        c16, c64 = ratio(lambda n: rps(n, 16)), ratio(lambda n: rps(n, 64))
        cpu = ratio(lambda n: self._cpu_per_req_us(n, 16))
        p50 = stream(last, "ttfb50")
        streams = self._added_stream(last, 1000)

        def ratio_text(value: float | None) -> str:
            return "—" if value is None else f"{value:.2f}×"

        goals = [f"| issue 13: {counts[-1]} workers against {counts[0]} | goal | value | met |",
                 "|---|--:|--:|:-:|",
                 goal("requests/s at c=16", "≥ 1.6×", ratio_text(c16),
                      None if c16 is None else c16 >= 1.6),
                 goal("requests/s at c=64", "≥ 1.6×", ratio_text(c64),
                      None if c64 is None else c64 >= 1.6),
                 goal("CPU per request at c=16", "(none)", ratio_text(cpu), None),
                 goal(f"1,000 streams, {counts[-1]} workers: added TTFB p50 (ms)", "≤ 100",
                      _num(p50, 1), None if p50 is None else p50 <= 100),
                 goal(f"1,000 streams, {counts[-1]} workers: intact", "100 %", complete(last),
                      None if streams is None else streams[1].intact == streams[1].started)]
        base = self._cpu_per_req_us(KESTREL, 16)
        one = self._cpu_per_req_us(workers_target(1), 16) if 1 in counts else None
        if base and one:
            goals.append(goal(f"WORKERS=1 CPU per request at c=16 ÷ {KESTREL} (no WORKERS)",
                              "within noise", f"{one / base:.2f}×", None))
        return [*lines, "", *goals, "", *self._spread_table(names)]

    def _spread_table(self, names: Sequence[str]) -> list[str]:
        """Per phase, each worker's mean client connections and its share of the CPU."""
        lines = ["How the load spread over the workers (mean connections held, sampled every "
                 "0.5 s; share of the target's CPU):", "",
                 "| target | phase | connections per worker | CPU per worker |",
                 "|---|---|--:|--:|"]
        for row in self.rows:
            usage = row.server
            if row.phase.target not in names or usage is None or len(
                    usage.children_cpu_s) < 2:
                continue
            cpu = usage.children_cpu_s
            lines.append(f"| {row.phase.target} | {row.phase.kind} × {row.phase.concurrency} | "
                         + " / ".join(f"{c:.0f}" for c in usage.children_connections) + " | "
                         + " / ".join(f"{100 * c / (usage.cpu_s or 1):.0f} %" for c in cpu)
                         + " |")
        return lines
