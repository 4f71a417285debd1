"""The fault matrix's database rows (issue 8): the file turning read-only under load, and SIGKILL.

Requests are judged as in `test_fault_matrix.py` (definitions in `support/burst.py`). The
read-only database is made for real: the database and its WAL get the immutable attribute, which
ext4 enforces even on the descriptors Kestrel already holds, and even for root (`chmod` would
change nothing: see `support.db.immutable`). Kestrel must keep serving from memory, hold its
request logs and retry them, and write them once the file is writable again. SIGKILL strikes in
the middle of a load with streams in flight; after a restart the database must pass
`PRAGMA integrity_check` and hold the same accounts, keys and cooldowns, and the request log
may lack only what finished in the last second before the kill (the writer flushes every
0.5 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_upstream import ANY, overloaded, rate_limited, success
from support.burst import Sent, Verdict, burst, fire, judge, new_batch, tally
from support.db import immutable, raw
from support.faults import explain, finish_row, log_writer, three_accounts
from support.stack import Stack, account_key, message_body

# "logs lose at most the last second"
LOG_LOSS_WINDOW = 1.0


def database(stack: Stack) -> Path:
    return stack.kestrel.workdir / "kestrel.db"


def database_files(stack: Stack) -> tuple[Path, Path]:
    """The files SQLite writes to: the database and its WAL (the `-shm` index is memory-mapped
    and holds nothing that survives; an immutable mapping would crash the process with SIGBUS
    rather than fail a write)."""
    return database(stack), database(stack).with_name("kestrel.db-wal")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def refused_log_writes(stack: Stack) -> bool:
    """Kestrel said in its own log that the request log could not be written."""
    return any(r.get("logger") == "kestrel.logwriter" and r.get("level") == "warning"
               and "cannot write" in str(r.get("msg")) for r in stack.kestrel.records())


def test_database_read_only_while_serving(tmp_path: Path) -> None:
    """Requests never wait on the database: the file turning read-only changes nothing for
    clients, request logs are held and retried (or counted as dropped), and written once the
    file is writable again."""
    with three_accounts(tmp_path) as stack:
        with stack.http() as client:
            assert client.post("/v1/messages", json=message_body("before")).status_code == 200
        assert len(stack.logs(expect=1)) == 1
        before = log_writer(stack)
        with immutable(*database_files(stack)):
            result = burst(stack.url, stack.key, stack.up, "read-only database")
            # The fault is real: Kestrel's own writes fail, it says so, and nothing is written.
            assert wait_for(lambda: refused_log_writes(stack)), "no failed write was reported"
            during = log_writer(stack)
            finish_row(stack, "database read-only while serving", result)
        assert result.served == len(result.sent), explain(stack, result)
        assert during["rows_written_total"] == before["rows_written_total"]
        held = during["queue_depth"] + during["rows_dropped_total"] - before["rows_dropped_total"]
        assert held == len(result.sent)  # each row waits for a retry, or was counted as dropped

        # Writable again: the rows held back are written (the dropped ones are counted).
        assert wait_for(lambda: log_writer(stack)["queue_depth"] == 0)
        after = log_writer(stack)
        dropped = after["rows_dropped_total"] - before["rows_dropped_total"]
        written = after["rows_written_total"] - before["rows_written_total"]
        assert written + dropped == len(result.sent)
        logged = {row["request_id"] for row in stack.logs(expect=1 + len(result.sent))}
        lost = [s for s in result.sent if s.headers["x-kestrel-request-id"] not in logged]
        assert len(lost) == dropped


def test_account_failing_while_database_read_only(tmp_path: Path) -> None:
    """The rotation table does not depend on the database: a 529 still moves the request to
    the next account when the account's new state cannot be stored."""
    with three_accounts(tmp_path) as stack:
        stack.up.set_default(account_key("a"), overloaded())
        with immutable(*database_files(stack)):
            result = burst(stack.url, stack.key, stack.up, "read-only database, 529")
            finish_row(stack, "database read-only + one account 529", result)
        assert stack.up.requests_for(account_key("a")), "a was never tried"
        assert result.served == len(result.sent), explain(stack, result)


def durable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accounts or keys without what traffic moves on: `last_used_at`, a key's spend, an
    account's rate-limit headroom (stored every 10 s; the latest answer's is shown)."""
    moving = {"last_used_at", "tokens_today", "spent_today_usd", "spent_this_month_usd",
              "rate_limits"}
    return [{k: v for k, v in item.items() if k not in moving} for item in items]


def snapshot(stack: Stack) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with stack.admin() as admin:
        accounts = admin.get("/admin/accounts").json()["data"]
        keys = admin.get("/admin/keys").json()["data"]
    return durable(accounts), durable(keys)


def test_sigkill_during_load_then_restart(tmp_path: Path) -> None:
    """A crash costs only what was in flight: the database is sound, its accounts, keys and
    cooldowns as they were, the log complete but for the last second, and the clients that
    were cut off are served when they try again."""
    with three_accounts(tmp_path) as stack:
        # State worth keeping: c cooling down for five minutes, a spare key and a revoked one.
        stack.up.script(account_key("c"), [rate_limited(retry_after=300)])
        with stack.http() as client:  # balanced rotation: a, b, then c, which 429s
            for n in range(3):
                assert client.post("/v1/messages", json=message_body(f"setup {n}")
                                   ).status_code == 200
        cooling = stack.account("c")
        assert cooling["status"] == "cooldown"
        with stack.admin() as admin:
            spare = admin.post("/admin/keys", json={"name": "spare"}).json()["key"]
            gone = admin.post("/admin/keys", json={"name": "gone"}).json()
            assert admin.delete(f"/admin/keys/{gone['id']}").status_code in (200, 204)
        kept = snapshot(stack)

        # Load: ten clients at a time, streams paced so several are mid-way at the kill.
        stack.up.set_default(ANY, success(event_interval=0.02))
        batch = new_batch("sigkill", 200)
        killed_at: list[float] = []

        def kill_halfway(sent: Sent) -> None:
            if not killed_at and sum(s.ended > 0 for s in batch) >= len(batch) // 2:
                assert stack.kestrel.proc is not None
                stack.kestrel.proc.kill()
                killed_at.append(time.time())

        asyncio.run(fire(stack.url, stack.key, batch, concurrency=10, on_end=kill_halfway))
        (kill,) = killed_at
        records = {r.request_id: r for r in stack.up.requests}
        served = [s for s in batch if judge(s, records)[0] is Verdict.SERVED]
        cut = [s for s in batch if s not in served]
        for s in cut:  # an interrupted exchange: nothing, or a prefix of its own answer
            assert s.error is not None and s.ended >= kill, (s, judge(s, records))
            upstream = records.get(s.headers.get("request-id", ""))
            assert s.status is None or (upstream is not None and upstream.body == s.body
                                        and upstream.answer.startswith(s.received)), s
        assert cut, "the kill interrupted nothing"

        with raw(database(stack)) as conn:  # as the kill left it
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stack.restart()
        assert snapshot(stack) == kept
        assert stack.account("c")["cooldown_until"] == cooling["cooldown_until"]
        with stack.kestrel.client() as client:
            for key, status in ((spare, 200), (gone["key"], 401)):
                answer = client.post("/v1/messages", json=message_body("keys"),
                                     headers={"x-api-key": key})
                assert answer.status_code == status, answer.text

        # The clients try again what the kill interrupted: all of it is served now.
        retried = [Sent(s.index, s.stream, s.body) for s in cut]
        asyncio.run(fire(stack.url, stack.key, retried))
        result = tally([*served, *retried], stack.up)
        finish_row(stack, f"SIGKILL during load, restart ({len(cut)} retried)", result)
        assert result.served == len(batch), explain(stack, result)

        # Logs: every request that ended over a second before the kill is there.
        ids = {s.headers["x-kestrel-request-id"] for s in retried}
        assert wait_for(lambda: ids <= {r["request_id"] for r in stack.logs(expect=0)})
        logged = {r["request_id"] for r in stack.logs(expect=0)}
        settled = [s for s in served if s.ended <= kill - LOG_LOSS_WINDOW]
        assert len(settled) >= 20, "the load before the kill was too short to tell"
        missing = [s.index for s in settled if s.headers["x-kestrel-request-id"] not in logged]
        assert missing == []
