"""One Kestrel process started with DATABASE_URL, as an operator starts it: it keeps its state in
PostgreSQL (no SQLite file appears), serves, writes its request logs there, and never shows the
database password. The multi-instance rules run on both engines in test_shared_state.py."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from fake_upstream import ANY, success
from support.burst import new_batch, tally
from support.postgres import PASSWORD, Cluster
from support.stack import Stack, message_body, running_stack
from support.workers import SPREAD_SECONDS, STREAM_PACE, Background, events


def cache_client_key(stack: Stack) -> None:
    """Let the instance check the stack's client key once and keep it in memory, after the
    change feed has brought the key's creation (which empties that key's cache entry): within
    the 1 s every change takes at most."""
    time.sleep(SPREAD_SECONDS)
    with stack.http() as client:
        assert client.post("/v1/messages", json=message_body("before")).status_code == 200


def writes_come_back(admin: httpx.Client, within: float = 15.0) -> None:
    """Admin writes answer 503 while the database is away, then succeed by themselves."""
    deadline = time.monotonic() + within
    while (created := admin.post("/admin/keys", json={"name": "back"})).status_code != 201:
        assert created.status_code == 503, created.text
        assert time.monotonic() < deadline, "admin writes never came back"
        time.sleep(0.2)


def test_an_instance_on_postgresql_serves_logs_and_never_shows_the_password(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.database()
    with running_stack(tmp_path, accounts=("a",),
                       env={"DATABASE_URL": url, "INSTANCE_NAME": "east-1"}) as stack:
        with stack.http() as client:
            response = client.post("/v1/messages", json=message_body("kept in postgres"))
            assert response.status_code == 200
            request_id = response.headers["x-request-id"]
        (started,) = events(stack.kestrel, "started")
        database = url.split("/")[-1].split("?")[0]
        assert started["db"] == f"postgresql://kestrel@127.0.0.1:{pg_cluster.port}/{database}"
        with stack.admin() as admin:
            deadline = time.monotonic() + 10
            while not (rows := admin.get("/admin/logs").json()["data"]):
                assert time.monotonic() < deadline, "the request log never showed the request"
                time.sleep(0.1)
        assert [(row["request_id"], row["instance"]) for row in rows] == [(request_id, "east-1")]
    assert not list(tmp_path.glob("*.db*"))  # nothing of the state went to a SQLite file
    conn = pg_cluster.connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT request_id, status, instance FROM request_logs")
        assert [tuple(row) for row in cursor.fetchall()] == [(request_id, 200, "east-1")]
    finally:
        conn.close()
    assert PASSWORD not in "\n".join(stack.kestrel.lines)


def test_while_postgresql_is_away_proxying_goes_on_and_admin_writes_answer_503(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    with running_stack(tmp_path, accounts=("a",),
                       env={"DATABASE_URL": pg_cluster.database()}) as stack:
        with stack.admin() as admin:  # a key this instance has not checked yet
            unseen = admin.post("/admin/keys", json={"name": "unseen"}).json()["key"]
        cache_client_key(stack)
        pg_cluster.stop_server()
        try:
            with stack.http() as client:
                for n in range(5):
                    response = client.post("/v1/messages", json=message_body(f"away {n}"))
                    assert response.status_code == 200, response.text
                # Checking a new key needs the database: refused in Anthropic's shape, for now.
                response = client.post("/v1/messages", json=message_body("new key"),
                                       headers={"x-api-key": unseen})
                assert response.status_code == 503
                assert response.json() == {"type": "error", "error": {
                    "type": "api_error",
                    "message": "the database is unavailable; try again shortly"}}
            with stack.admin() as admin:
                refused = admin.post("/admin/keys", json={"name": "while away"})
                assert refused.status_code == 503
                assert refused.json()["error"]["message"] == (
                    "the database is unavailable; try again shortly")
                health = admin.get("/health")
                assert (health.status_code, health.json()["status"]) == (200, "degraded")
        finally:
            pg_cluster.start_server()
        with stack.admin() as admin:
            writes_come_back(admin)
            assert admin.get("/health").json()["status"] == "ok"
            deadline = time.monotonic() + 15  # the rows of the requests served meanwhile
            while (logs := admin.get("/admin/logs")).status_code != 200 or len(
                    logs.json()["data"]) < 6:
                # A reader that lost its connection waits out its reconnect delay (up to 5 s).
                assert logs.status_code in (200, 503), logs.text
                assert time.monotonic() < deadline, "request logs were lost"
                time.sleep(0.2)
    errors = [line for line in stack.kestrel.lines if '"level": "error"' in line]
    assert not errors, errors


def test_a_postgresql_restart_under_load_fails_no_request(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    """200 requests, half of them streams, from keep-alive clients while the server restarts:
    every one is served, byte for byte, and admin writes come back by themselves."""
    with running_stack(tmp_path, accounts=("a", "b"),
                       env={"DATABASE_URL": pg_cluster.database()}) as stack:
        stack.up.set_default(ANY, success(event_interval=STREAM_PACE))
        cache_client_key(stack)
        batch = new_batch("pg-restart", 200)  # every other one streaming
        with Background(stack.url, stack.key, batch, connections=20) as load:
            load.wait_started(20)
            pg_cluster.restart()
            assert not all(s.ended for s in batch)  # the restart happened under the load
        result = tally(batch, stack.up)
        assert (result.served, result.wrong, result.hung) == (200, 0, 0), result.reasons()
        with stack.admin() as admin:
            writes_come_back(admin)
