"""Kestrel's benchmark: the same load direct to a mock Anthropic and through Kestrel (and any
proxy given with --compare), in one run, printed as tables with ratios.

    python3 bench/run.py                   # the full run (about 6 minutes)
    python3 bench/run.py --quick           # a smoke run (about a minute)
    python3 bench/run.py --compare nginx   # nginx as a plain reverse proxy in the same run
    python3 bench/run.py --workers 1,2     # Kestrel with WORKERS=1 and WORKERS=2 side by side

Run it with the Python that has Kestrel's dependencies (h11, httpx, cryptography). docs/bench.md
says what to install and what each column means.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from load import WrkResult
from machine import describe_machine
from phases import PLAIN, STREAM, Measured, Settings, median_rounds, plan, run_phase
from procs import log_warnings, raise_fd_limit
from report import (
    ACCESSLOG,
    CONTROLS,
    KESTREL,
    NOLOG,
    POSTGRES,
    WORKERS_PREFIX,
    Report,
    workers_target,
)
from services import (
    FLOORS,
    Target,
    build_tools,
    check_route,
    export_ref,
    floor_command,
    nginx_command,
    start_command,
    start_kestrel,
    start_kestrel_instances,
    start_mock,
)

FULL = {"plain_seconds": 10.0, "warmup_seconds": 1.0, "stream_seconds": 10.0,
        "stream_grace": 30.0}
QUICK = {"plain_seconds": 2.0, "warmup_seconds": 1.0, "stream_seconds": 2.0,
         "stream_grace": 15.0}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a short smoke run: 2 s per phase instead of 10")
    p.add_argument("--compare", action="append", default=[], metavar="NAME[=CMD]",
                   help="add a proxy to the run: `nginx`, `floor` (a minimal asyncio + h11 "
                   "proxy, bench/floor_servers.py), `lean-floor` (the same parsing the "
                   "upstream's answer by hand), or NAME=CMD with a shell command "
                   "that serves 127.0.0.1:{port} in the foreground and forwards to {upstream} "
                   "({upstream_port}; {dir} is a scratch directory). Repeatable.")
    p.add_argument("--ref", action="append", default=[], metavar="GIT_REF",
                   help="also run Kestrel as committed at GIT_REF (git archive into a temporary "
                   "directory; the checkout is untouched), as target kestrel@GIT_REF: before "
                   "and after a change in one run. Repeatable.")
    p.add_argument("--workers", type=_worker_counts, default=(), metavar="N[,M...]",
                   help="also run Kestrel with WORKERS=N for each value (targets kestrel-wN), "
                   "measured on /v1/messages at c=16 and 64 and under every stream load; the "
                   "report compares each with the first value")
    p.add_argument("--postgres", type=_worker_counts, nargs="?", const=(1,), default=(),
                   metavar="N[,M...]",
                   help="also run Kestrel with its state in PostgreSQL, on a throwaway cluster "
                   "of Debian's server started as the tests start it: one instance (target "
                   "kestrel-pg) for 1, N instances on one database behind nginx (target "
                   "kestrel-pg-xN) for N >= 2; default 1")
    p.add_argument("--key-controls", action="store_true",
                   help="also run Kestrel whose client key has every control and limit set "
                   "that the requests pass (allowed models, addresses, an expiry, rpm, tpm, "
                   "concurrency, daily tokens, budgets), as kestrel-controls: what checking "
                   "and counting them costs")
    p.add_argument("--phases", default="plain,stream",
                   help="which phases: plain, stream or both (default plain,stream)")
    p.add_argument("--pin", action="store_true",
                   help="pin the proxies to CPU 0 and the mock and load generators to the "
                   "other CPUs (default: no pinning, the scheduler decides)")
    p.add_argument("--access-log", action="store_true",
                   help="run Kestrel with LOG_LEVEL=info (one access log line per request)")
    p.add_argument("--no-log-variants", action="store_true",
                   help="skip the two extra Kestrel instances that measure logging: "
                   "kestrel-nolog (request log off) and kestrel-accesslog (LOG_LEVEL=info)")
    p.add_argument("--sse-client", choices=("c", "python"), default="c",
                   help="stream load generator: the C one (default) or sse_client.py")
    p.add_argument("--deltas", type=int, default=50, help="text deltas per stream (50)")
    p.add_argument("--interval-ms", type=int, default=20, help="ms between deltas (20)")
    p.add_argument("--delay-ms", type=int, default=0,
                   help="the mock's delay before the first byte of every response (0)")
    p.add_argument("--plain-seconds", type=float, help="seconds per plain phase")
    p.add_argument("--rounds", type=int, default=1,
                   help="run each non-streaming load this many times, the targets' order "
                   "reversed every other round, and report each target's median round (by "
                   "CPU per request): unpinned, one 10 s figure can land on a moment the "
                   "scheduler placed badly (default 1)")
    p.add_argument("--stream-seconds", type=float,
                   help="seconds during which each stream phase starts new streams")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary directory (every server's log, Kestrel's database)")
    p.add_argument("--out", type=Path, help="also write the report (Markdown) to this file")
    p.add_argument("--json", type=Path, help="write every measurement as JSON to this file")
    return p


def _worker_counts(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError("takes distinct worker counts, e.g. 1,2")
    return counts


def _missing(compare: dict[str, str]) -> list[str]:
    """What this machine lacks for the run, each with the line that installs it."""
    problems = []
    if shutil.which("wrk") is None:
        problems.append("wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk)")
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        problems.append("make and a C compiler are needed (sudo apt-get install make gcc)")
    for module in ("h11", "httpx", "cryptography"):
        if importlib.util.find_spec(module) is None:
            problems.append(f"Python module {module} is missing from {sys.executable}: run the "
                            "bench with the Python that runs Kestrel (pip install -e .)")
    if "nginx" in compare and not compare["nginx"]:
        problems.append("--compare nginx: nginx is not installed (sudo apt-get install "
                        "nginx-light)")
    return problems


# Every per-key control and limit, set so that the bench's requests pass them all (issue 16):
# what checking and counting them costs.
BENCH_KEY_CONTROLS: dict[str, object] = {
    "models": ["claude-haiku-*", "claude-sonnet-*", "claude-opus-*"],
    "allowed_ips": ["127.0.0.0/8", "10.0.0.0/8"],
    "expires_at": "2099-01-01T00:00:00Z",
    "rpm": 10**9, "tpm": 10**12, "max_concurrency": 100_000, "daily_tokens": 10**15,
    "daily_budget_usd": 10**8, "monthly_budget_usd": 10**9,
}


def _compare_commands(specs: list[str]) -> dict[str, str]:
    commands: dict[str, str] = {}
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep:
            if name == "nginx":
                command = nginx_command() or ""
            elif name in FLOORS:
                command = floor_command(name)
            else:
                raise SystemExit(f"--compare {spec}: only `nginx`, `floor` and `lean-floor` have "
                                 "a built-in command; give others as NAME=CMD")
        if (name in ("direct", KESTREL, NOLOG, ACCESSLOG) or name.startswith(WORKERS_PREFIX)
                or not re.fullmatch(r"[A-Za-z][\w.-]*", name)):
            raise SystemExit(f"--compare {spec}: pick another name")
        commands[name] = command
    return commands


def _progress(i: int, total: int, row: Measured) -> None:
    p, r = row.phase, row.result
    what = (f"{r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, {r.errors} errors"
            if isinstance(r, WrkResult) else f"{r.intact}/{r.started} streams intact")
    print(f"[{i}/{total}] {p.kind} {p.target} {p.route} × {p.concurrency}: {what}",
          file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    load_before = os.getloadavg()
    compare = _compare_commands(args.compare)
    kinds = tuple(k.strip() for k in args.phases.split(",") if k.strip())
    if not kinds or any(k not in (PLAIN, STREAM) for k in kinds):
        raise SystemExit("--phases takes plain, stream or plain,stream")
    if problems := _missing(compare):
        print("bench: cannot run on this machine yet:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 2
    raise_fd_limit()
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = {cpus[0]} if args.pin and len(cpus) > 1 else None
    load_cpus = set(cpus[1:]) if server_cpus else None
    durations = dict(QUICK if args.quick else FULL)
    if args.plain_seconds:
        durations["plain_seconds"] = args.plain_seconds
    if args.stream_seconds:
        durations["stream_seconds"] = args.stream_seconds

    workdir = Path(tempfile.mkdtemp(prefix="kestrel-bench-"))
    targets: list[Target] = []
    notes: list[str] = []
    rows: list[Measured] = []
    cluster = None  # the throwaway PostgreSQL server of --postgres
    try:
        tools = build_tools(workdir / "build")
        settings = Settings(plain_concurrency=(1, 16, 64), stream_concurrency=(100, 1000),
                            deltas=args.deltas, interval_ms=args.interval_ms,
                            sse_client=args.sse_client, sseload=tools.sseload,
                            load_cpus=load_cpus, plain_rounds=max(1, args.rounds),
                            **durations)
        mock = start_mock(tools, workdir, deltas=args.deltas, interval_ms=args.interval_ms,
                          delay_ms=args.delay_ms, cpus=load_cpus)
        targets.append(mock)
        targets.append(start_kestrel(KESTREL, workdir, mock, request_log=True,
                                     access_log=args.access_log, cpus=server_cpus))
        if not args.no_log_variants and PLAIN in kinds:
            targets.append(start_kestrel(NOLOG, workdir, mock, request_log=False,
                                         access_log=args.access_log, cpus=server_cpus))
            if not args.access_log:
                targets.append(start_kestrel(ACCESSLOG, workdir, mock, request_log=True,
                                             access_log=True, cpus=server_cpus))
        if args.key_controls:
            targets.append(start_kestrel(CONTROLS, workdir, mock, request_log=True,
                                         access_log=args.access_log, cpus=server_cpus,
                                         key_controls=BENCH_KEY_CONTROLS))
        if args.postgres:
            sys.path.append(str(Path(__file__).resolve().parent.parent / "tests"))
            from support.postgres import start_cluster
            cluster = start_cluster()
        for count in args.postgres:
            assert cluster is not None
            if count == 1:
                targets.append(start_kestrel(POSTGRES, workdir, mock, request_log=True,
                                             access_log=args.access_log, cpus=server_cpus,
                                             database_url=cluster.database()))
            else:
                targets.append(start_kestrel_instances(
                    f"{POSTGRES}-x{count}", workdir, mock, count=count,
                    database_url=cluster.database(), access_log=args.access_log,
                    cpus=server_cpus))
        for count in args.workers:
            targets.append(start_kestrel(workers_target(count), workdir, mock, request_log=True,
                                         access_log=args.access_log, cpus=server_cpus,
                                         workers=count))
        for i, ref in enumerate(args.ref):
            source = export_ref(ref, workdir / f"ref-{i}")
            targets.append(start_kestrel(f"kestrel@{ref}", workdir, mock, request_log=True,
                                         access_log=args.access_log, cpus=server_cpus,
                                         source=source))
        for name, command in compare.items():
            targets.append(start_command(name, command, workdir, mock, cpus=server_cpus))
        for target in targets:
            for route in target.routes:
                problem = check_route(target, route)
                if problem is None:
                    continue
                if route == "messages":
                    raise RuntimeError(f"{target.name}: POST /v1/messages does not work: "
                                       f"{problem}")
                target.routes = tuple(r for r in target.routes if r != route)
                notes.append(f"{target.name}: /v1/chat/completions skipped: {problem}")
        by_name = {t.name: t for t in targets}
        phases = plan(targets, settings, kinds=kinds, variants={NOLOG, ACCESSLOG},
                      scaling={workers_target(n) for n in args.workers})
        for i, phase in enumerate(phases, 1):
            row = run_phase(phase, by_name[phase.target], mock, settings)
            rows.append(row)
            _progress(i, len(phases), row)
        rows = median_rounds(rows)
    finally:
        for target in reversed(targets):
            target.process.stop()
            if target.name.startswith(KESTREL) and (logged := log_warnings(
                    target.process.log_path)):
                notes.append(f"{target.name} logged: " + "; ".join(logged))
        if cluster is not None:
            cluster.close()
        if args.keep:
            print(f"bench: logs and databases kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    command = "python3 bench/run.py" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    others = [t.name for t in targets if t.name not in ("direct", KESTREL, NOLOG, ACCESSLOG)
              and not t.name.startswith(WORKERS_PREFIX)]
    text = render(Report(rows), settings, args, command, targets, notes, others, load_before)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return 0


def render(report: Report, settings: Settings, args: argparse.Namespace, command: str,
           targets: list[Target], notes: list[str], compare: list[str],
           load_before: tuple[float, float, float]) -> str:
    lines = [*describe_machine(load_before), f"- Command: `{command}`",
             "- Pinning: " + ("proxies on the first CPU, mock and load generators on the others"
                              if settings.load_cpus else "none (the scheduler places every "
                              "process; mock, proxy and load generator share all CPUs)"),
             f"- Plain phases: wrk for {settings.plain_seconds:g} s each after "
             f"{settings.warmup_seconds:g} s of unmeasured warm-up"
             + (f"; {settings.plain_rounds} rounds, the targets' order reversed every other "
                "round, each row the target's median round by CPU per request."
                if settings.plain_rounds > 1 else "."),
             f"- Stream phases: {settings.deltas} deltas × {settings.interval_ms} ms per stream; "
             f"new streams start for {settings.stream_seconds:g} s (the first ones spread over "
             f"{settings.ramp_seconds:g} s), then the last ones finish; client: "
             + ("C (bench/loadgen/sseload.c)" if settings.sse_client == "c"
                else "Python (bench/sse_client.py)") + ".",
             f"- Mock delay before the first byte: {args.delay_ms} ms.",
             "- Targets: " + "; ".join(f"**{t.name}**" + (f" ({t.note})" if t.note else "")
                                        for t in targets), ""]
    if any(r.phase.kind == PLAIN for r in report.rows):
        lines += ["### Non-streaming", "", *report.plain_table(), ""]
    if any(r.phase.kind == STREAM for r in report.rows):
        lines += ["### Streaming", "", *report.stream_table(), ""]
        if problems := report.stream_problems():
            lines += ["Streams that were not intact:", "", *problems, ""]
    lines += ["### Against the targets of issue 7", "", *report.targets_table(compare), ""]
    if args.workers:
        lines += ["### WORKERS (issue 13)", "", *report.workers_table(args.workers), ""]
    if notes:
        lines += ["Notes:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
