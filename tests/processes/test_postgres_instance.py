"""One Kestrel process started with DATABASE_URL, as an operator starts it: it keeps its state in
PostgreSQL (no SQLite file appears), serves, writes its request logs there, and never shows the
database password. The multi-instance rules run on both engines in test_shared_state.py."""

from __future__ import annotations

import time
from pathlib import Path

from support.postgres import PASSWORD, Cluster
from support.stack import message_body, running_stack
from support.workers import events


def test_an_instance_on_postgresql_serves_logs_and_never_shows_the_password(
        tmp_path: Path, pg_cluster: Cluster) -> None:
    url = pg_cluster.database()
    with running_stack(tmp_path, accounts=("a",), env={"DATABASE_URL": url}) as stack:
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
        assert [row["request_id"] for row in rows] == [request_id]
    assert not list(tmp_path.glob("*.db*"))  # nothing of the state went to a SQLite file
    conn = pg_cluster.connect(database)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT request_id, status FROM request_logs")
        assert [tuple(row) for row in cursor.fetchall()] == [(request_id, 200)]
    finally:
        conn.close()
    assert PASSWORD not in "\n".join(stack.kestrel.lines)
