"""`kestrel migrate-to`: a box's SQLite deployment moved into PostgreSQL, as an operator does it,
with real processes: used first on SQLite, stopped, copied, then served from PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.postgres import PASSWORD, Cluster
from support.process import run_kestrel
from support.stack import account_key, message_body, running_stack


def test_a_sqlite_deployment_moves_to_postgresql_whole_and_a_second_run_is_safe(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.database()
    with running_stack(tmp_path, accounts=("a", "b")) as stack:
        key = stack.key
        with stack.http() as client:
            for n in range(5):
                assert client.post("/v1/messages", json=message_body(f"old {n}")).status_code == 200
        with stack.admin() as admin:
            revoked = admin.post("/admin/keys", json={"name": "gone"}).json()
            admin.delete(f"/admin/keys/{revoked['id']}")
            # The five rows, and their tokens in the key's spend: the meter stores usage apart
            # from the log (every quarter second), and on a loaded machine it can come second.
            deadline = time.monotonic() + 10
            while not _settled_spend(admin.get("/admin/logs").json()["data"],
                                     admin.get("/admin/keys").json()["data"]):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            before = {"accounts": admin.get("/admin/accounts").json()["data"],
                      "keys": admin.get("/admin/keys").json()["data"]}
        env = stack.kestrel.env
    copied = run_kestrel(tmp_path, ["migrate-to"], env={**env, "DATABASE_URL": url})
    assert copied.returncode == 0, copied.stderr
    counts = dict(line.split() for line in copied.stdout.splitlines()[:9])
    assert (counts["accounts"], counts["api_keys"], counts["request_logs"]) == ("2", "2", "5")
    assert "every table counted the same" in copied.stdout
    assert PASSWORD not in copied.stdout + copied.stderr

    again = run_kestrel(tmp_path, ["migrate-to", url], env=env)
    assert again.returncode == 1
    assert "already holds a Kestrel deployment; use --force" in again.stderr
    forced = run_kestrel(tmp_path, ["migrate-to", url, "--force"], env=env)
    assert forced.returncode == 0, forced.stderr

    (tmp_path / "pg").mkdir()
    with running_stack(tmp_path / "pg", accounts=(), env={"DATABASE_URL": url}) as moved:
        with moved.admin() as admin:
            accounts = admin.get("/admin/accounts").json()["data"]
            # masked hints, states, ids: all the same
            assert [_settled(a) for a in accounts] == [_settled(a) for a in before["accounts"]]
            assert all(a["rate_limits"]["requests"]["limit"] for a in accounts)
            keys = admin.get("/admin/keys").json()["data"]
            old_ids = {k["id"] for k in before["keys"]}
            assert [k for k in keys if k["id"] in old_ids] == before["keys"]
            assert len(keys) == len(old_ids) + 1  # and the new stack's own key, a new id
            logs = admin.get("/admin/logs").json()["data"]
            assert len(logs) == 5
            # A new row gets a new id: the copied ids are behind the counters.
            added = admin.post("/admin/accounts", json={"name": "c", "api_key": account_key("c")})
            assert added.status_code == 201 and added.json()["id"] > max(
                a["id"] for a in accounts)
        # The old client key still opens the door, and the sealed credentials still open.
        with moved.http(headers={"x-api-key": key}) as client:
            for n in range(4):
                response = client.post("/v1/messages", json=message_body(f"new {n}"))
                assert response.status_code == 200, response.text
        sent = {r.credential for r in moved.up.requests}
        assert sent <= {account_key("a"), account_key("b"), account_key("c")} and sent


def _settled(account: dict[str, Any]) -> dict[str, Any]:
    """The account without its rate-limit headroom, which is stored every 10 s while the
    running stack showed the latest answer's."""
    return {name: value for name, value in account.items() if name != "rate_limits"}


def _settled_spend(logs: list[dict[str, Any]], keys: list[dict[str, Any]]) -> bool:
    """All five requests logged, and each key's tokens today (input, cache writes and output,
    as the spend counts them) those of its rows."""
    used: dict[int, int] = {}
    for row in logs:
        used[row["key_id"]] = used.get(row["key_id"], 0) + (
            row["input_tokens"] + row["cache_creation_tokens"] + row["output_tokens"])
    return len(logs) == 5 and all(k["tokens_today"] == used.get(k["id"], 0) for k in keys)
