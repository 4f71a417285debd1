"""The admin API over a real socket: accounts, client keys, every error code, and what is stored."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from conftest import ADMIN_KEY
from support.process import KestrelProcess

API_KEY = "sk-ant-api03-RECOGNISABLE-secret-value-XYZ7Qa"
AUTH = {"X-Admin-Key": ADMIN_KEY}


def admin(kestrel: KestrelProcess) -> httpx.Client:
    return kestrel.client(headers=AUTH)


def create_account(client: httpx.Client, **fields: object) -> dict[str, object]:
    body = {"name": "first", "api_key": API_KEY, **fields}
    response = client.post("/admin/accounts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, type_: str,
                 field: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["field"] == field
    assert error["message"]
    return str(error["message"])


def test_account_lifecycle(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        created = create_account(client, priority=5, base_url="http://127.0.0.1:9/")
        assert created["name"] == "first"
        assert created["type"] == "api_key"
        assert created["priority"] == 5
        assert created["enabled"] is True
        assert created["status"] == "active"
        assert created["consecutive_failures"] == 0
        assert created["cooldown_until"] is None
        assert created["credential_hint"] == "sk-ant-…" + API_KEY[-4:]
        assert "api_key" not in created
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(created["created_at"]))
        account_id = created["id"]

        assert client.get("/admin/accounts").json() == {"data": [created]}
        assert client.get(f"/admin/accounts/{account_id}").json() == created

        changed = client.put(f"/admin/accounts/{account_id}",
                             json={"name": "renamed", "enabled": False, "base_url": None})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert (body["name"], body["enabled"], body["base_url"], body["priority"]) == (
            "renamed", False, None, 5)
        assert body["status"] == "disabled"

        rekeyed = client.put(f"/admin/accounts/{account_id}",
                             json={"api_key": "sk-ant-api03-another-key-abcd"}).json()
        assert rekeyed["credential_hint"] == "sk-ant-…abcd"

        reset = client.post(f"/admin/accounts/{account_id}/reset")
        assert reset.status_code == 200 and reset.json()["consecutive_failures"] == 0

        deleted = client.delete(f"/admin/accounts/{account_id}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert_error(client.get(f"/admin/accounts/{account_id}"), 404, "not_found_error")
        assert client.get("/admin/accounts").json() == {"data": []}


@pytest.mark.parametrize(
    ("body", "status", "type_", "field"),
    [
        (b"{not json", 400, "invalid_request_error", None),
        (b"[1, 2]", 400, "invalid_request_error", None),
        (b"", 400, "invalid_request_error", None),
        (b'{"api_key": "sk-ant-api03-0123456789"}', 422, "invalid_request_error", "name"),
        (b'{"name": "x"}', 422, "invalid_request_error", "api_key"),
        (b'{"name": "", "api_key": "sk-ant-api03-0123456789"}', 422, "invalid_request_error",
         "name"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "priority": "high"}', 422,
         "invalid_request_error", "priority"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "priority": true}', 422,
         "invalid_request_error", "priority"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "enabled": "yes"}', 422,
         "invalid_request_error", "enabled"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "base_url": "ftp://h"}', 422,
         "invalid_request_error", "base_url"),
        # credentials in a URL would be stored and shown in clear
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "base_url": "https://u:p@h/"}',
         422, "invalid_request_error", "base_url"),
        # what the transport would only find out when connecting (once a 500 on every request)
        *((b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "base_url": "%s"}' % url,
           422, "invalid_request_error", "base_url")
          for url in (b"http://[::1", b"http://h:99999", b"http://h/\\u007f", b"http://a..b",
                      b"http://" + b"a" * 64 + b".example", b"http://a b")),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "colour": "red"}', 422,
         "invalid_request_error", "colour"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "type": "oauth"}', 422,
         "invalid_request_error", "type"),
        (b'{"name": "x", "api_key": "sk-ant-api03-0123456789", "status": "active"}', 422,
         "invalid_request_error", "status"),
    ],
)
def test_account_create_rejects_bad_input(kestrel: KestrelProcess, body: bytes, status: int,
                                          type_: str, field: str | None) -> None:
    with admin(kestrel) as client:
        response = client.post("/admin/accounts", content=body,
                               headers={"content-type": "application/json"})
        message = assert_error(response, status, type_, field)
        assert "sk-ant-api03-0123456789" not in message
        assert client.get("/admin/accounts").json() == {"data": []}


def test_conflicts_and_missing_rows(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        first = create_account(client)
        second = create_account(client, name="second")
        assert_error(client.post("/admin/accounts", json={"name": "first", "api_key": API_KEY}),
                     409, "conflict_error", "name")
        assert_error(client.put(f"/admin/accounts/{second['id']}", json={"name": "first"}),
                     409, "conflict_error", "name")
        assert_error(client.put("/admin/accounts/999", json={"priority": 1}), 404,
                     "not_found_error")
        assert_error(client.delete("/admin/accounts/999"), 404, "not_found_error")
        assert_error(client.post("/admin/accounts/999/reset"), 404, "not_found_error")
        assert_error(client.get("/admin/accounts/abc"), 400, "invalid_request_error", "id")
        assert_error(client.delete("/admin/keys/999"), 404, "not_found_error")
        names = [a["name"] for a in client.get("/admin/accounts").json()["data"]]
        assert sorted(names) == ["first", "second"]
        assert first["id"] != second["id"]


def test_unknown_path_and_wrong_method(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        assert_error(client.get("/admin/nothing-here"), 404, "not_found_error")
        response = client.patch("/admin/accounts/1", json={})
        assert_error(response, 405, "invalid_request_error")
        assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"


@pytest.mark.parametrize("kestrel_env", [{"ADMIN_KEY": ADMIN_KEY, "ENCRYPTION_KEY": "22" * 32,
                                          "MAX_BODY_BYTES": "1000"}])
def test_body_over_limit_is_413(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        huge = {"name": "x" * 2000, "api_key": API_KEY}
        assert_error(client.post("/admin/accounts", json=huge), 413, "request_too_large")
        assert client.get("/admin/accounts").json() == {"data": []}


def test_every_admin_route_needs_the_key(kestrel: KestrelProcess) -> None:
    with kestrel.client() as client:
        document = client.get("/openapi.json").json()
    admin_routes = [(method.upper(), path.replace("{id}", "1"))
                    for path, item in document["paths"].items()
                    for method, operation in item.items()
                    if operation["security"] == [{"adminKey": []}]]
    assert len(admin_routes) >= 9
    for n, (method, path) in enumerate(admin_routes):
        # Each route from its own loopback address, to stay under the per-address lock-out.
        transport = httpx.HTTPTransport(local_address=f"127.0.0.{n + 2}")
        with kestrel.client(transport=transport) as client:
            missing = client.request(method, path, json={})
            assert_error(missing, 401, "authentication_error")
            wrong = client.request(method, path, json={}, headers={"X-Admin-Key": "nope"})
            assert_error(wrong, 401, "authentication_error")
            assert "nope" not in wrong.text


def test_brute_force_is_limited_per_address(kestrel: KestrelProcess) -> None:
    with kestrel.client() as client:
        for _ in range(10):
            assert client.get("/admin/accounts", headers={"X-Admin-Key": "guess"}
                              ).status_code == 401
        locked = client.get("/admin/accounts", headers=AUTH)
        assert_error(locked, 429, "rate_limit_error")
        assert 1 <= int(locked.headers["retry-after"]) <= 60
        # Public routes are not behind the admin limit.
        assert client.get("/health").status_code == 200


def test_client_keys_are_shown_once_and_revoked(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        created = client.post("/admin/keys", json={"name": "laptop"})
        assert created.status_code == 201
        assert created.headers["cache-control"] == "no-store"
        body = created.json()
        key = body["key"]
        assert re.fullmatch(r"kst_[A-Za-z0-9_-]{43}", key)
        assert body["prefix"] == key[:12]
        assert body["revoked_at"] is None and body["last_used_at"] is None

        listing = client.get("/admin/keys")
        assert key not in listing.text
        (row,) = listing.json()["data"]
        assert row == {k: v for k, v in body.items() if k != "key"}

        revoked = client.delete(f"/admin/keys/{row['id']}")
        assert revoked.status_code == 200
        revoked_at = revoked.json()["revoked_at"]
        assert revoked_at is not None
        again = client.delete(f"/admin/keys/{row['id']}").json()
        assert again["revoked_at"] == revoked_at
        assert_error(client.post("/admin/keys", json={"name": ""}), 422,
                     "invalid_request_error", "name")


def test_database_file_holds_no_plaintext_secret(kestrel: KestrelProcess) -> None:
    with admin(kestrel) as client:
        create_account(client)
        key = client.post("/admin/keys", json={"name": "k"}).json()["key"]
    database = kestrel.workdir / "kestrel.db"
    files = [p for p in kestrel.workdir.iterdir() if p.name.startswith("kestrel.db")
             and not p.name.endswith(".secrets")]
    assert database in files
    for needle in (API_KEY, API_KEY[7:30], key, key[12:]):
        for path in files:
            assert needle.encode() not in path.read_bytes(), (needle, path.name)
    kestrel.stop()
    assert API_KEY.encode() not in database.read_bytes()
    with sqlite3.connect(database) as conn:
        (blob,) = conn.execute("SELECT credential FROM accounts").fetchone()
    conn.close()
    assert isinstance(blob, bytes) and API_KEY.encode() not in blob


def test_health_and_request_id(kestrel: KestrelProcess) -> None:
    with kestrel.client() as client:
        response = client.get("/health", headers={"x-request-id": "trace-123"})
        assert response.json()["status"] == "ok"
        assert response.headers["x-request-id"] == "trace-123"
        generated = client.get("/health", headers={"x-request-id": "bad id <script>"})
        assert generated.headers["x-request-id"] != "bad id <script>"
        assert generated.headers["x-request-id"]


def test_health_is_degraded_when_the_database_cannot_be_read(kestrel: KestrelProcess) -> None:
    database: Path = kestrel.workdir / "kestrel.db"
    with kestrel.client() as client:
        assert client.get("/health").json()["status"] == "ok"
        database.rename(database.with_name("moved-away.db"))  # the disk lost it
        response = client.get("/health")
        assert response.status_code == 200  # still proxying: a balancer keeps sending
        assert response.json()["status"] == "degraded"
        assert response.json()["error"].startswith("the database cannot be read")
        database.with_name("moved-away.db").rename(database)
        assert client.get("/health").json()["status"] == "ok"
