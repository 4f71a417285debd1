"""A worker killed under load is replaced, and costs only the requests it was serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from support.burst import new_batch, tally
from support.workers import (
    Background,
    alive,
    client_connections,
    request_id,
    served_by,
    wait_for,
    worker_pids,
    worker_stack,
)


def test_a_killed_worker_is_replaced_and_only_its_requests_fail(tmp_path: Path) -> None:
    with worker_stack(tmp_path) as stack:
        before = worker_pids(stack.kestrel)
        port = stack.kestrel.port
        assert port is not None
        batch = new_batch("kill", 200)
        with Background(stack.url, stack.key, batch, connections=40) as load:
            load.wait_started(40)
            # The worker holding more of the clients' connections: the kill must cost requests.
            victim = max(before, key=lambda i: client_connections(before[i], port))
            other = 3 - victim
            os.kill(before[victim], signal.SIGKILL)
            # The kill takes effect when the kernel has torn the process down and closed its
            # sockets, a few milliseconds after kill() returns: until then a request written
            # on one of its keep-alive connections is lost with it.
            while alive(before[victim]):
                time.sleep(0.001)
            killed_at = time.time()
            (exited,) = wait_for(stack.kestrel, "worker_exited")
        result = tally(batch, stack.up)
        # The supervisor saw the death, said how it ended, and started that worker again.
        assert (exited["index"], exited["pid"], exited["exit_code"]) == (victim, before[victim],
                                                                         -signal.SIGKILL)
        assert exited["restart_in"] == 1.0
        wait_for(stack.kestrel, "worker_started", count=3)
        after = worker_pids(stack.kestrel)
        assert after[other] == before[other] and after[victim] != before[victim]
        assert not alive(before[victim])
        with httpx.Client(base_url=stack.url) as client:
            assert client.get("/health").json()["workers"] == {"up": 2, "configured": 2}
        # No request outlived its deadline. The failures are requests the killed worker had in
        # hand: sent before the kill, and not answered by the other worker.
        assert result.hung == 0
        failed = [s for s in batch if s.status is None or s.error is not None]
        assert failed and result.served == len(batch) - len(failed), result.reasons()
        survivor = {rid for rid, worker in served_by(stack.kestrel).items() if worker == other}
        for sent in failed:
            assert sent.started < killed_at, sent
            assert request_id(sent) not in survivor, sent
        # The other worker kept serving: every request sent after the kill was served.
        later = [s for s in batch if s.started > killed_at]
        assert later and tally(later, stack.up).served == len(later)
