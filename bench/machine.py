"""Where and when a run happened: the lines at the top of a report."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "not available"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _kestrel_version() -> str:
    commit = _first_line(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "kestrel"])
    return f"commit {commit}" + (" with uncommitted changes under kestrel/"
                                 if dirty != "not available" else "")


def load_before_and_after(before: tuple[float, float, float]) -> str:
    """The load average when a run began and now, for the scripts that print one line of it."""
    return f"Load average before: {_loads(before)}; after: {_loads(os.getloadavg())}"


def _loads(load: tuple[float, float, float]) -> str:
    """A load average's three figures (1, 5, 15 min) as every report prints them."""
    return ", ".join(f"{x:.2f}" for x in load)


def describe_machine(load_before: tuple[float, float, float] | None = None) -> list[str]:
    """The report's first lines; `load_before` is the load average when the run began."""
    now = datetime.now(UTC).strftime("%a %b %d %H:%M:%S UTC %Y")  # as `date -u` prints it
    return [
        f"- Date: {now}",
        f"- Machine: {len(os.sched_getaffinity(0))} CPUs available ({os.cpu_count()} online), "
        f"{_cpu_model()}, {_memory_gib()} RAM, Linux {platform.release()}",
        f"- Python {platform.python_version()} ({sys.implementation.name}); "
        f"{_first_line(['wrk', '--version'])}; {_first_line(['cc', '--version'])}",
        f"- Kestrel: {_kestrel_version()}",
        *([] if load_before is None else [
            f"- Load average when the run began (1, 5, 15 min): {_loads(load_before)}"]),
        f"- Load average when the report was written (1, 5, 15 min): {_loads(os.getloadavg())}"
        " (the machine is shared: other work running meanwhile adds noise)",
    ]
