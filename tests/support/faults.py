"""What the fault tests share: a pool of three accounts, places that misbehave below HTTP, and
how a row of the fault matrix is reported and checked."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support import figures
from support.burst import Tally
from support.stack import Stack, running_stack

ACCOUNTS = ("a", "b", "c")
TABLE = "Fault matrix"
COLUMNS = ("fault", "requests", "served", "documented errors", "wrong answers", "hung")

# Short, so a timeout fault costs seconds, not minutes; yet a healthy account must never time
# out. Both are measured on Kestrel's event loop, which a burst on a CPU-starved 2-core machine
# keeps busy: at 0.5 s the connects to healthy accounts timed out by the dozen there, at 3 s
# none did.
TIMEOUTS = {"UPSTREAM_CONNECT_TIMEOUT": "3", "UPSTREAM_READ_TIMEOUT": "3"}


@contextmanager
def three_accounts(workdir: Path, env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Fake Anthropic and Kestrel with accounts a, b, c of equal priority (balanced rotation),
    each naming the fake as its own `base_url`, so a fault can point one elsewhere."""
    with running_stack(workdir, accounts=(), env={**TIMEOUTS, **(env or {})}) as stack:
        for name in ACCOUNTS:
            stack.add_account(name, base_url=stack.up.base_url)
        yield stack


def restore(stack: Stack) -> None:
    """Undo the last row: every account healthy, at equal priority, on the fake; the fake with
    no scripts and no records."""
    with stack.admin() as admin:
        for account_id in stack.accounts.values():
            changed = admin.put(f"/admin/accounts/{account_id}",
                                json={"base_url": stack.up.base_url, "priority": 0})
            assert changed.status_code == 200, changed.text
            assert admin.post(f"/admin/accounts/{account_id}/reset").status_code == 200
    stack.up.reset()


def explain(stack: Stack, result: Tally) -> str:
    """For a failed assertion: what the requests got, how the accounts ended, and every
    upstream attempt that failed (account id and outcome, from /metrics)."""
    with stack.admin() as admin:
        accounts = admin.get("/admin/accounts").json()["data"]
        metrics = admin.get("/metrics").text
    states = {a["name"]: (a["id"], a["status"], a["consecutive_failures"], a["last_error"])
              for a in accounts}
    failed = re.findall(r'^kestrel_upstream_attempts_total\{account_id="(\d+)",'
                        r'outcome="(?!2\d\d")([^"]+)"\} (\S+)$', metrics, re.MULTILINE)
    return f"{dict(result.reasons())}; accounts {states}; failed attempts {failed}"


def finish_row(stack: Stack, fault: str, result: Tally) -> None:
    """Report the row, then the checks every row shares: no wrong answer, nothing hung, the
    server still healthy, the fake itself never failed."""
    figures.report(TABLE, COLUMNS, result.row(fault))
    assert result.wrong == 0, explain(stack, result)
    assert result.hung == 0, explain(stack, result)
    with stack.kestrel.client() as client:
        assert client.get("/health").status_code == 200
    assert stack.up.errors == []


def log_writer(stack: Stack) -> dict[str, float]:
    """The request log writer's figures from /metrics: `queue_depth`, `rows_written_total`,
    `rows_dropped_total`."""
    with stack.admin() as admin:
        text = admin.get("/metrics").text
    return {name: float(value)
            for name, value in re.findall(r"^kestrel_log_(\w+) (\S+)$", text, re.MULTILINE)}


@contextmanager
def refusing_address() -> Iterator[str]:
    """A base URL that refuses connections: a port held bound (so nothing else takes it) but
    not listening, which the kernel answers with a RST."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@contextmanager
def unanswered_address() -> Iterator[str]:
    """A base URL whose connects never complete: a listener with a backlog of 0 whose single
    queue slot is taken and never accepted, so the kernel drops every further SYN."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler.connect(listener.getsockname())
        with socket.socket() as check:  # the fault must be real: a connect now goes nowhere
            check.settimeout(0.2)
            try:
                check.connect(listener.getsockname())
            except TimeoutError:
                pass
            else:
                raise AssertionError("a connect to the full listener completed")
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
