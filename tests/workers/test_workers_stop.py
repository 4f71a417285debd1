"""Stopping: SIGTERM drains every worker and exits 0; a supervisor that vanishes leaves no
worker serving behind it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from support.burst import new_batch, tally
from support.workers import Background, alive, events, wait_for, worker_pids, worker_stack

# The workers notice a vanished supervisor at once (EOF on a pipe), then drain: idle
# connections linger a second before they close.
ORPHAN_EXIT_SECONDS = 5.0


def test_sigterm_lets_streams_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    with worker_stack(tmp_path) as stack:
        pids = worker_pids(stack.kestrel)
        batch = [s for s in new_batch("stop", 40) if s.stream]  # 20 streams of about 0.5 s
        with Background(stack.url, stack.key, batch, connections=20) as load:
            load.wait_started(20)  # every stream has its head: all are under way
            assert not any(s.ended for s in batch)
            code = stack.kestrel.stop(signal.SIGTERM)
        assert code == 0
        assert tally(batch, stack.up).served == 20  # whole, byte for byte
        assert sorted(e["pid"] for e in events(stack.kestrel, "worker_stopped")) == sorted(
            pids.values())
        assert not any(alive(pid) for pid in pids.values())
        assert events(stack.kestrel, "stopped")


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    with worker_stack(tmp_path) as stack:
        assert stack.kestrel.proc is not None
        pids = worker_pids(stack.kestrel)
        stack.kestrel.proc.send_signal(signal.SIGKILL)
        wait_for(stack.kestrel, "worker_stopped", count=2, timeout=ORPHAN_EXIT_SECONDS)
        deadline = time.monotonic() + ORPHAN_EXIT_SECONDS
        while any(alive(pid) for pid in pids.values()):
            assert time.monotonic() < deadline, "a worker outlived its supervisor"
            time.sleep(0.05)
