"""SIGHUP replaces every worker without a failed request (issue 13, point 6)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import httpx

from conftest import ADMIN_KEY, ENCRYPTION_KEY
from fake_upstream import ANY, success
from support.burst import new_batch, tally
from support.process import REPO, KestrelProcess
from support.workers import (
    Background,
    alive,
    events,
    scrape,
    total,
    wait_for,
    worker_pids,
    worker_stack,
)

# Seconds between a stream's events in the reload test (the worker stack's usual pace is 0.03).
RELOAD_STREAM_PACE = 0.1


def test_sighup_under_load_replaces_every_worker_and_fails_nothing(tmp_path: Path) -> None:
    with worker_stack(tmp_path) as stack:
        assert stack.kestrel.proc is not None
        # Streams slow enough that the batch outlasts the reload on a loaded machine: at the
        # usual pace it could end first (the reload starts two Pythons in turn).
        stack.up.set_default(ANY, success(event_interval=RELOAD_STREAM_PACE))
        before = worker_pids(stack.kestrel)
        batch = new_batch("reload", 200)  # every other one streaming
        with Background(stack.url, stack.key, batch, connections=20) as load:
            load.wait_started(20)
            stack.kestrel.proc.send_signal(signal.SIGHUP)
            (finished,) = wait_for(stack.kestrel, "reload_finished")
            # The replacement happened under the load, not after it.
            assert not all(s.ended for s in batch)
        result = tally(batch, stack.up)
        assert result.served == 200, result.reasons()
        after = worker_pids(stack.kestrel)
        assert sorted(after) == [1, 2] and not set(after.values()) & set(before.values())
        assert sorted(finished["pids"]) == sorted(after.values())
        replaced = events(stack.kestrel, "worker_replaced")
        assert [(e["index"], e["old_pid"]) for e in replaced] == sorted(before.items())
        wait_for(stack.kestrel, "worker_exited", count=2)
        assert not any(alive(pid) for pid in before.values())
        # Every request counted once, the retired workers' included.
        got = scrape(stack)
        assert total(got, "kestrel_requests_total") == 200
        with httpx.Client(base_url=stack.url) as client:
            assert client.get("/health").json()["workers"] == {"up": 2, "configured": 2}


def from_a_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the `kestrel` package to change under a running Kestrel, and the environment
    that runs it (the copy first; the dashboard's files still come from the checkout)."""
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "kestrel", tree / "kestrel",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tree / "kestrel", {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                              "WORKERS": "2",
                              "PYTHONPATH": os.pathsep.join([str(tree), str(REPO)])}


def test_sighup_starts_the_workers_from_the_code_now_on_disk(tmp_path: Path) -> None:
    """What makes SIGHUP a deploy: a new worker runs the code as it is on disk by then."""
    package, env = from_a_copy(tmp_path)
    with KestrelProcess(tmp_path, env=env) as kestrel:
        assert kestrel.proc is not None
        (started,) = events(kestrel, "started")
        init = package / "__init__.py"
        init.write_text(init.read_text().replace(started["version"], "99.0-deployed"))
        kestrel.proc.send_signal(signal.SIGHUP)
        wait_for(kestrel, "reload_finished")
        versions = [e["version"] for e in events(kestrel, "worker_started")]
        assert versions == [started["version"]] * 2 + ["99.0-deployed"] * 2
        with kestrel.client() as client:
            assert client.get("/health").json()["version"] == "99.0-deployed"


def test_a_release_that_cannot_start_leaves_the_old_workers_serving(tmp_path: Path) -> None:
    package, env = from_a_copy(tmp_path)
    with KestrelProcess(tmp_path, env=env) as kestrel:
        assert kestrel.proc is not None
        before = worker_pids(kestrel)
        (package / "serve.py").write_text("raise SystemExit('a broken release')\n")
        kestrel.proc.send_signal(signal.SIGHUP)
        wait_for(kestrel, "reload_failed")
        assert not events(kestrel, "worker_replaced")
        assert worker_pids(kestrel) == before and all(alive(p) for p in before.values())
        for _ in range(4):  # new connections: both old workers still answer
            with httpx.Client(base_url=kestrel.base_url) as client:
                assert client.get("/health").json()["workers"] == {"up": 2, "configured": 2}
