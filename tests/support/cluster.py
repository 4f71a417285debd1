"""Several real Kestrel processes on one database file, in front of one fake Anthropic.

Each process is started as an operator would start a second one beside the first: the same
directory (so the same `kestrel.db` and settings), its own port. `Cluster.nodes[i]` is a
`Stack` for process i; they share the client key and the account names.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_upstream import FakeAnthropic
from support.process import KestrelProcess
from support.stack import ADMIN_KEY, ENCRYPTION_KEY, Stack, message_body


@dataclass
class Cluster:
    up: FakeAnthropic
    nodes: list[Stack]

    def add_account(self, name: str, **fields: Any) -> int:
        return self.nodes[0].add_account(name, **fields)


@contextmanager
def running_cluster(workdir: Path, size: int, *,
                    env: dict[str, str] | None = None) -> Iterator[Cluster]:
    with ExitStack() as stack:
        up = stack.enter_context(FakeAnthropic())
        settings = {"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": ENCRYPTION_KEY,
                    "CLAUDE_BASE_URL": up.base_url, **(env or {})}
        processes = [stack.enter_context(KestrelProcess(workdir, env=settings))
                     for _ in range(size)]
        with processes[0].client(headers={"X-Admin-Key": ADMIN_KEY}) as admin:
            key = admin.post("/admin/keys", json={"name": "tests"}).json()["key"]
        accounts: dict[str, int] = {}
        nodes = [Stack(up, process, key, accounts=accounts) for process in processes]
        try:
            yield Cluster(up, nodes)
        finally:
            for node in nodes:
                for sdk in node.sdk_clients:
                    sdk.close()


def seconds_until(condition: Callable[[], bool], *, timeout: float = 5.0,
                  step: float = 0.005) -> float:
    """How long until `condition()` holds, polled every `step`; AssertionError past `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


# --- what a process holds, read from the process itself ---------------------------------------


def pool_statuses(node: Stack) -> dict[str, str]:
    """account name → status, as the process's pool has it (its `/metrics` gauges render the
    pool the proxy chooses from)."""
    with node.admin() as admin:
        text = admin.get("/metrics").text
    statuses = {}
    for line in text.splitlines():
        if line.startswith("kestrel_account_up{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            statuses[labels["account"]] = labels["status"]
    return statuses


def status_is(name: str, status: str | None) -> Callable[[Stack], bool]:
    return lambda node: pool_statuses(node).get(name) == status


def serves(node: Stack, secret: str) -> bool:
    """Whether the process's proxy takes the client key `secret` (its key cache's answer)."""
    with node.http(headers={"x-api-key": secret}) as client:
        return client.post("/v1/messages", json=message_body()).status_code == 200


def spread(change: Callable[[], object], seen: Callable[[Stack], bool], nodes: list[Stack],
           watchers: ThreadPoolExecutor | None = None) -> list[float]:
    """Seconds from just before `change()` until each node shows it, polled every 5 ms: one
    node after the other, or all at once on `watchers` (one thread per node)."""
    started = time.monotonic()
    change()
    if watchers is None:
        return [_seen_at(lambda node=node: seen(node)) - started for node in nodes]
    watches = [watchers.submit(_seen_at, lambda node=node: seen(node)) for node in nodes]
    return [watch.result() - started for watch in watches]


def _seen_at(condition: Callable[[], bool]) -> float:
    seconds_until(condition, timeout=10.0)
    return time.monotonic()
