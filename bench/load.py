"""Load generators, each its own process: wrk for plain requests, sseload (C) or
sse_client.py (Python) for streams. Both are bounded in time."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "post.lua"
SSE_CLIENT = BENCH_DIR / "sse_client.py"
# On top of a phase's own duration: process start, wrk's last responses, reading the result.
SUBPROCESS_SLACK_SECONDS = 30.0

MESSAGES_BODY = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 64,
                            "messages": [{"role": "user", "content": "hi"}]},
                           separators=(",", ":"))
# OpenAI's chat completions body, as the issue gives it.
CHAT_BODY = json.dumps({"model": "claude-sonnet-4-6",
                        "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64},
                       separators=(",", ":"))
ROUTE_PATHS = {"messages": "/v1/messages", "chat": "/v1/chat/completions"}
ROUTE_BODIES = {"messages": MESSAGES_BODY, "chat": CHAT_BODY}
ROUTE_KINDS = {"messages": "anthropic", "chat": "openai"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    loadgen_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


@dataclass
class StreamResult:
    started: int
    intact: int
    broken: int
    unfinished: int
    ttfb_us: list[int]
    ttlb_us: list[int]
    connect_us: list[int]
    problems: dict[str, int]
    wall_s: float
    loadgen_cpu_s: float


def run_wrk(base_url: str, route: str, *, concurrency: int, seconds: float,
            api_key: str | None, cpus: set[int] | None, body: str | None = None,
            headers: Sequence[tuple[str, str]] = ()) -> WrkResult:
    """`body` instead of the route's usual one; `headers` besides the usual fields."""
    threads = 1 if concurrency < 4 else 2
    seconds = max(1, round(seconds))  # wrk takes whole seconds only
    env = dict(os.environ, BENCH_BODY=ROUTE_BODIES[route] if body is None else body,
               BENCH_API_KEY=api_key or "",
               BENCH_HEADERS="".join(f"{name}: {value}\n" for name, value in headers))
    argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s",
            "--timeout", "10s", "-s", str(WRK_SCRIPT), base_url + ROUTE_PATHS[route]]
    before = _children_cpu()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                            timeout=seconds + SUBPROCESS_SLACK_SECONDS,
                            preexec_fn=_pin(cpus))
    cpu = _children_cpu() - before
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    latency = data["latency_us"]
    return WrkResult(requests=data["requests"], duration_s=data["duration_us"] / 1e6,
                     errors=sum(data["errors"].values()), p50_ms=latency["p50"] / 1000,
                     p90_ms=latency["p90"] / 1000, p99_ms=latency["p99"] / 1000,
                     loadgen_cpu_s=cpu)


def run_streams(base_url: str, route: str, *, client: str, sseload: Path, concurrency: int,
                seconds: float, grace: float, deltas: int, ramp: float, api_key: str | None,
                cpus: set[int] | None) -> StreamResult:
    parts = urlsplit(base_url)
    common = ["--concurrency", str(concurrency), "--duration", f"{seconds:g}",
              "--grace", f"{grace:g}", "--ramp", f"{ramp:g}", "--deltas", str(deltas),
              "--kind", ROUTE_KINDS[route]]
    if api_key:
        common += ["--api-key", api_key]
    if client == "c":
        argv = [str(sseload), "--host", parts.hostname or "127.0.0.1",
                "--port", str(parts.port), "--path", ROUTE_PATHS[route], *common]
    else:
        argv = [sys.executable, str(SSE_CLIENT), "--url", base_url + ROUTE_PATHS[route],
                *common]
    before, started = _children_cpu(), time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False,
                            timeout=seconds + grace + SUBPROCESS_SLACK_SECONDS,
                            preexec_fn=_pin(cpus))
    cpu, wall = _children_cpu() - before, time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"stream client failed ({result.returncode}):\n{result.stderr}")
    data = json.loads(result.stdout)
    return StreamResult(started=data["started"], intact=data["intact"], broken=data["broken"],
                        unfinished=data["unfinished"], ttfb_us=data["ttfb_us"],
                        ttlb_us=data["ttlb_us"], connect_us=data["connect_us"],
                        problems=data["problems"], wall_s=wall, loadgen_cpu_s=cpu)


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins the load generator to `cpus` (with `--pin`)."""
    if not cpus:
        return None
    chosen = set(cpus)

    def pin() -> None:
        os.sched_setaffinity(0, chosen)
    return pin
