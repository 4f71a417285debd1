"""Processes under test: start and stop them, and read their CPU time and memory from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_WAIT_SECONDS = 10.0


def free_port() -> int:
    """A port free on loopback right now (the process that takes it starts a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit() -> None:
    """1,000 streams through a proxy hold 2,000+ sockets; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the command name, which sits in parentheses and may hold spaces.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (nginx's workers, a wrapper's child)."""
    tree, todo = [pid], [pid]
    while todo:
        kids = _children(todo.pop())
        tree.extend(kids)
        todo.extend(kids)
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """user + system CPU of these processes (all their threads), from /proc/<pid>/stat."""
    return sum(_cpu_of(pid) for pid in pids)


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def context_switches(pids: Sequence[int]) -> int:
    """Voluntary and involuntary context switches of every thread of these processes so far.

    Why count them: a thread that waits for the interpreter lock is woken each time the event
    loop lets go of it for a system call, and every wake is a switch; pinned to one CPU those
    cost little, spread over two they cost as much as the work (bench/RESULTS.md, run 10).
    """
    total = 0
    for pid in pids:
        try:
            threads = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for thread in threads:
            try:
                status = (thread / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if "ctxt_switches:" in line:  # voluntary_… and nonvoluntary_…
                    total += int(line.rpartition(":")[2])
    return total


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
    return inodes


def established(port: int, pids: Sequence[int]) -> dict[int, int]:
    """Established TCP connections on local `port`, counted per process holding them: how the
    kernel spread a load's connections over the processes that accept on one socket."""
    owners = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    counts = dict.fromkeys(pids, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state, inode = (line.split()[i] for i in (1, 3, 9))
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in owners:
                    counts[owners[inode]] += 1
    return counts


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pids: Sequence[int]) -> float:
    """Sum of VmHWM (peak resident set) over the processes, in MB."""
    return sum(_status_kib(pid, "VmHWM") for pid in pids) / 1024


def reset_peak_rss(pids: Sequence[int]) -> bool:
    """Restart VmHWM from the current RSS (Linux ≥ 4.0), so each phase has its own peak."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


# How often a phase counts each worker's connections: a few samples even in a 2 s quick phase,
# and reading /proc that seldom costs the machine nothing measurable.
CONNECTION_SAMPLE_SECONDS = 0.5


@dataclass
class Usage:
    """CPU seconds and peak RSS of a set of processes over one phase. For a process with
    children (Kestrel's workers, nginx's), each child's share: CPU seconds, and the mean
    number of client connections it held on the target's port."""

    cpu_s: float
    peak_rss_mb: float
    switches: int = 0  # context switches of all their threads (see `context_switches`)
    children_cpu_s: list[float] = field(default_factory=list)
    children_connections: list[float] = field(default_factory=list)


class Meter:
    """Measures a process tree between `start()` and `stop()`; with `port`, also how the
    connections to that port spread over the children."""

    def __init__(self, pid: int | None, port: int | None = None) -> None:
        self._pid = pid
        self._port = port
        self._pids: list[int] = []
        self._cpu0: dict[int, float] = {}
        self._switches0 = 0
        self._wall0 = 0.0
        self._samples: list[dict[int, int]] = []
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None
        self.peak_reset = False

    def start(self) -> None:
        if self._pid is None:
            return
        self._pids = process_tree(self._pid)
        self.peak_reset = reset_peak_rss(self._pids)
        self._cpu0 = {pid: _cpu_of(pid) for pid in self._pids}
        self._switches0 = context_switches(self._pids)
        self._wall0 = time.monotonic()
        if self._port is not None and len(self._pids) > 1:
            self._sampler = threading.Thread(target=self._sample, args=(self._port,),
                                             daemon=True)
            self._sampler.start()

    def _sample(self, port: int) -> None:
        while not self._done.wait(CONNECTION_SAMPLE_SECONDS):
            self._samples.append(established(port, self._pids[1:]))

    def stop(self) -> Usage | None:
        if self._pid is None:
            return None
        self._done.set()
        if self._sampler is not None:
            self._sampler.join()
        cpu = {pid: _cpu_of(pid) - self._cpu0[pid] for pid in self._pids}
        children = self._pids[1:]
        return Usage(cpu_s=sum(cpu.values()), peak_rss_mb=peak_rss_mb(self._pids),
                     switches=context_switches(self._pids) - self._switches0,
                     children_cpu_s=[cpu[pid] for pid in children],
                     children_connections=[
                         sum(s[pid] for s in self._samples) / len(self._samples)
                         for pid in children] if self._samples else [])


class Process:
    """A child process in its own session, so stopping it stops its helpers too."""

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, log_path: Path, cpus: set[int] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        if cpus:
            os.sched_setaffinity(self.popen.pid, cpus)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


def wait_until_ready(url: str, process: Process, timeout: float = 30.0) -> None:
    """Poll `url` until it answers at all (any HTTP status), or fail with the process's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited during start:\n{process.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{process.name} did not answer {url} within {timeout:g}s:\n"
                       f"{process.log_tail()}")


def log_warnings(path: Path, limit: int = 5) -> list[str]:
    """The most frequent warning and error messages of a JSON-lines log, with their counts."""
    counts: Counter[str] = Counter()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            if line.strip():
                counts[line.strip()[:160]] += 1  # not JSON: a traceback or a crash message
            continue
        if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
            counts[f"{record['level']}: {str(record.get('msg'))[:160]}"] += 1
    return [f"{message} (×{n})" for message, n in counts.most_common(limit)]
