"""How long a change made through one Kestrel process takes to reach the others (issue 13:
within 1 s, aiming for 250 ms at p99).

    python3 bench/propagation.py [--processes 3] [--changes 40] [--postgres]

Several real processes on one database (SQLite in a temp dir, or a throwaway PostgreSQL
cluster started as the tests start one), in front of the tests' fake Anthropic. Each change is
made through the first process's admin API; a thread per other process polls that process
until it shows the change (an account's state from its `/metrics` pool gauges, a revoked key
from its proxy's answer), every 5 ms. Prints, per kind of change, the percentiles of the delay
over every (change, other process) pair, with the load average before and after (these
machines are shared: rerun above 0.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from kestrel.store.request_logs import percentile  # noqa: E402

from fake_upstream import rate_limited  # noqa: E402
from support.cluster import (  # noqa: E402
    running_cluster,
    seconds_until,
    serves,
    spread,
    status_is,
)
from support.stack import Stack, account_key, message_body  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--changes", type=int, default=40, help="of each kind (default 40)")
    parser.add_argument("--postgres", action="store_true",
                        help="share a PostgreSQL database instead of a SQLite file")
    args = parser.parse_args()
    load_before = os.getloadavg()
    delays: dict[str, list[float]] = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kestrel-prop-")))
        env: dict[str, str] = {}
        if args.postgres:
            from support.postgres import start_cluster

            server = start_cluster()
            stack.callback(server.close)
            env["DATABASE_URL"] = server.database()
        cluster = stack.enter_context(running_cluster(workdir, args.processes, env=env))
        first, *others = cluster.nodes
        watchers = stack.enter_context(ThreadPoolExecutor(len(others)))
        cluster.add_account("a", priority=10)
        cluster.add_account("b")
        for node in others:
            seconds_until(lambda node=node: status_is("b", "active")(node), timeout=10)

        def measure(kind: str, change: Callable[[], object],
                    seen: Callable[[Stack], bool]) -> None:
            delays.setdefault(kind, []).extend(spread(change, seen, others, watchers))

        with first.admin() as admin:
            a = first.accounts["a"]
            for n in range(args.changes):
                measure("account disabled", lambda: admin.put(
                    f"/admin/accounts/{a}", json={"enabled": False}),
                    status_is("a", "disabled"))
                measure("account enabled", lambda: admin.put(
                    f"/admin/accounts/{a}", json={"enabled": True}),
                    status_is("a", "active"))
                cluster.up.script(account_key("a"), [rate_limited(retry_after=60)])

                def hit_429(n: int = n) -> None:
                    with first.http() as client:
                        assert client.post("/v1/messages",
                                           json=message_body(f"r{n}")).status_code == 200
                measure("cooldown learnt (429)", hit_429,
                        status_is("a", "cooldown"))
                measure("account reset", lambda: admin.post(f"/admin/accounts/{a}/reset"),
                        status_is("a", "active"))
                key = admin.post("/admin/keys", json={"name": f"k{n}"}).json()
                for node in others:  # each has checked the key once and cached it
                    assert serves(node, key["key"])
                measure("key revoked", lambda key_id=key["id"]: admin.delete(
                    f"/admin/keys/{key_id}"), lambda node, key=key: not serves(node, key["key"]))
    load_after = os.getloadavg()
    engine = "PostgreSQL" if args.postgres else "SQLite"
    print(f"Changes through 1 of {args.processes} processes on {engine}, seen by the "
          f"{args.processes - 1} others (seconds; polled every 5 ms)")
    print(f"{'change':24} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    everything = [t for times in delays.values() for t in times]
    for kind, times in [*delays.items(), ("all", everything)]:
        ordered = sorted(times)
        print(f"{kind:24} {len(times):4} {statistics.median(times):7.3f} "
              f"{percentile(ordered, 95) or 0:7.3f} {percentile(ordered, 99) or 0:7.3f} "
              f"{ordered[-1]:7.3f}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
