"""Who can reach the admin API of a real Kestrel: only a request carrying the admin key.

Every admin route comes from the server's own `/openapi.json`, so a route added later is covered
the day it appears. Each is tried with every method and with every wrong credential a caller
could plausibly send (none, a near miss, a client key in each of its headers, the metrics
token, the admin key in the wrong place), and with the method-override spellings some frameworks
honour. All must be refused with the documented status and the admin error shape, show no data,
change nothing, and carry no CORS grant. The brute-force limit is then checked from the outside.

Refused requests count against the per-address limit (10 a minute), so the matrix sends them
from fresh loopback addresses, a few each: otherwise it would only test the lock-out.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kestrel.api.admin_auth import FAILURE_WINDOW_SECONDS, MAX_FAILURES, AdminGuard
from kestrel.domain import AuthenticationError, RateLimited
from kestrel.store.admin_failures import AdminFailureStore
from kestrel.store.database import Database

from support.db import with_db
from support.figures import report
from support.process import loopback_addresses
from support.routes import METHODS, Operation, admin_operations, concrete
from support.stack import Stack, running_stack
from support.timing import interleaved, quantile

METRICS_TOKEN = "metrics-token-ACCESS-0123456789"
ACCOUNT = "private-account-DATAMARK"
KEY_NAME = "private-key-DATAMARK"
# What a refusal must never show: the names of the stored objects, or a listing.
DATA_MARKERS = (b"DATAMARK", b'"data"', b"credential_hint", b"kst_")
OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
# Each loopback address sends at most this many refused requests: under the limit of 10.
PER_ADDRESS = 8
# Headers that differ between any two answers (when, which request, seconds left).
VOLATILE = {"date", "x-request-id", "retry-after"}


@dataclass
class Guarded:
    stack: Stack
    document: dict[str, Any]
    values: dict[str, object]
    """Path parameters naming objects that exist, so a request that got through would hit data."""
    counts: dict[str, int] = field(default_factory=dict)
    addresses: Iterator[str] = field(default_factory=loopback_addresses)
    """Shared by every test of the module: a used address keeps its failures for a minute."""

    def passed(self, part: str, requests: int = 1) -> None:
        """Count requests that got the answer the test demands (it fails at the first other)."""
        self.counts[part] = self.counts.get(part, 0) + requests


class Spreader:
    """Clients from fresh loopback addresses, each used for `PER_ADDRESS` requests."""

    def __init__(self, guarded: Guarded) -> None:
        self._stack = guarded.stack
        self._addresses = guarded.addresses
        self._client: httpx.Client | None = None
        self._used = 0

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self._client is None or self._used == PER_ADDRESS:
            self.close()
            self._client = self._stack.kestrel.client_from(next(self._addresses))
            self._used = 0
        self._used += 1
        return self._client.request(method, url, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    workdir: Path = tmp_path_factory.mktemp("access")
    with running_stack(workdir, accounts=(), env={"METRICS_TOKEN": METRICS_TOKEN}) as stack:
        account_id = stack.add_account(ACCOUNT)
        with stack.admin() as admin:
            key = admin.post("/admin/keys", json={"name": KEY_NAME}).json()
            document = admin.get("/openapi.json").json()
        guarded = Guarded(stack, document, {"id": account_id})
        guarded.values["key_id"] = key["id"]
        yield guarded
        for part, requests in guarded.counts.items():
            report("Admin access (each answered as documented)", ("part", "requests"),
                   (part, requests))


def _state(stack: Stack) -> tuple[Any, Any]:
    """Everything an intruder could change: the accounts and the keys, as the admin sees them."""
    with stack.admin() as admin:
        accounts = admin.get("/admin/accounts").json()["data"]
        keys = admin.get("/admin/keys").json()["data"]
    # Times that reads and resets move on their own; an intruder's change shows elsewhere.
    volatile = ("last_used_at", "updated_at")
    return ([{k: v for k, v in row.items() if k not in volatile} for row in accounts],
            [{k: v for k, v in row.items() if k not in volatile} for row in keys])


def _path_of(guarded: Guarded, pattern: str) -> str:
    """The route with ids of real objects (`{id}` is a key's id under `/admin/keys/`)."""
    if pattern.startswith("/admin/keys/"):
        return concrete(pattern, {"id": guarded.values["key_id"]})
    return concrete(pattern, guarded.values)


def _body(path: str) -> dict[str, str]:
    """What would create or change something if a refused request got through."""
    if path == "/admin/accounts":
        return {"name": "intruder", "api_key": "sk-ant-api03-intruder-0123456789"}
    return {"name": "intruder"}


def _credentials(stack: Stack) -> dict[str, dict[str, Any]]:
    """Every wrong way to knock, as request keyword arguments (headers, query)."""
    right = stack.admin_key
    near = right[:-1] + ("X" if right[-1] != "X" else "Y")
    return {
        "no key": {},
        "empty key": {"headers": {"X-Admin-Key": ""}},
        "wrong key": {"headers": {"X-Admin-Key": "kadm_" + secrets.token_urlsafe(24)}},
        "nearly right key": {"headers": {"X-Admin-Key": near}},
        "right key + 1 char": {"headers": {"X-Admin-Key": right + "0"}},
        "client key as X-Admin-Key": {"headers": {"X-Admin-Key": stack.key}},
        "client key as Bearer": {"headers": {"Authorization": f"Bearer {stack.key}"}},
        "client key as x-api-key": {"headers": {"x-api-key": stack.key}},
        "metrics token as X-Admin-Key": {"headers": {"X-Admin-Key": METRICS_TOKEN}},
        "metrics token as Bearer": {"headers": {"Authorization": f"Bearer {METRICS_TOKEN}"}},
        "admin key as Bearer": {"headers": {"Authorization": f"Bearer {right}"}},
        "admin key in the query": {"params": {"x-admin-key": right, "admin_key": right,
                                              "key": right}},
    }


def _routed(documented: set[tuple[str, str]], method: str, pattern: str) -> bool:
    """Whether the router sends `method` to a handler (a GET route answers HEAD too)."""
    return (method, pattern) in documented or (method == "HEAD"
                                                and ("GET", pattern) in documented)


def assert_refused(response: httpx.Response, method: str, routed: bool) -> None:
    """Refused as documented: 401 where a handler exists (authentication runs before it), 405
    where none does (routing runs first, and says only what the document already says); the
    admin error shape whenever a body is allowed; no data and no CORS grant either way."""
    context = (method, str(response.url), response.status_code, response.text[:200])
    assert response.status_code == (401 if routed else 405), context
    if response.status_code == 405:
        assert response.headers["allow"], context
    if method == "HEAD":
        assert response.content == b"", context
    else:
        body = response.json()
        assert set(body) == {"error"}, context
        assert set(body["error"]) == {"type", "message", "field"}, context
        if routed:
            assert body["error"]["type"] == "authentication_error", context
    raw = response.content + json.dumps(dict(response.headers)).encode()
    assert not any(marker in raw for marker in DATA_MARKERS), context
    assert_no_cors(response)


def assert_no_cors(response: httpx.Response) -> None:
    granted = {k: v for k, v in response.headers.items() if k.startswith("access-control-")}
    assert not granted, (response.request.method, str(response.url), granted)


def _admin_ops(guarded: Guarded) -> list[Operation]:
    ops = admin_operations(guarded.document)
    documented = {(op.method, op.path) for op in ops}
    # The selection must really find the admin surface, or every loop below is empty.
    assert {("GET", "/admin/accounts"), ("DELETE", "/admin/keys/{id}"),
            ("GET", "/metrics")} <= documented, documented
    assert len(ops) >= 10
    return ops


def test_every_admin_route_refuses_every_request_without_the_right_key(
        guarded: Guarded) -> None:
    ops = _admin_ops(guarded)
    documented = {(op.method, op.path) for op in ops}
    patterns = sorted({op.path for op in ops})
    before = _state(guarded.stack)
    spreader = Spreader(guarded)
    try:
        for pattern, (name, knock), method in itertools.product(
                patterns, _credentials(guarded.stack).items(), METHODS):
            if name == "metrics token as Bearer" and pattern == "/metrics":
                continue  # exactly what METRICS_TOKEN is for
            path = _path_of(guarded, pattern)
            body = _body(pattern) if method in ("POST", "PUT", "PATCH") else None
            response = spreader.request(method, path, json=body, **knock)
            assert_refused(response, method, _routed(documented, method, pattern))
            guarded.passed(f"{len(patterns)} routes x 12 wrong keys x 7 methods: refused")
    finally:
        spreader.close()
    assert _state(guarded.stack) == before  # nothing created, renamed, deleted or revoked


def test_method_overrides_are_ignored(guarded: Guarded) -> None:
    """`X-HTTP-Method-Override: DELETE` and friends: the method on the request line is the only
    one that counts, without a key (still refused, with the status of the real method) and with
    the right key (a GET stays a read: nothing is deleted)."""
    ops = _admin_ops(guarded)
    documented = {(op.method, op.path) for op in ops}
    credentials = _credentials(guarded.stack)
    overrides: list[dict[str, Any]] = [{"headers": {name: "DELETE"}} for name in OVERRIDE_HEADERS]
    overrides.append({"params": {"_method": "DELETE"}})
    before = _state(guarded.stack)
    spreader = Spreader(guarded)
    try:
        for pattern, knock_name, method, override in itertools.product(
                sorted({op.path for op in ops}), ("no key", "wrong key", "client key as Bearer"),
                ("GET", "POST"), overrides):
            knock = credentials[knock_name]
            kwargs = {"headers": {**knock.get("headers", {}), **override.get("headers", {})},
                      "params": {**knock.get("params", {}), **override.get("params", {})}}
            response = spreader.request(method, _path_of(guarded, pattern), **kwargs)
            assert_refused(response, method, _routed(documented, method, pattern))
            guarded.passed("method overrides without the key: refused")
    finally:
        spreader.close()

    account = f"/admin/accounts/{guarded.values['id']}"
    key = f"/admin/keys/{guarded.values['key_id']}"
    with guarded.stack.admin() as admin:
        for override in overrides:
            read = admin.get(account, **override)
            assert read.status_code == 200 and read.json()["name"] == ACCOUNT, read.text
            listing = admin.get("/admin/accounts", **override)
            assert listing.status_code == 200, listing.text
            reset = admin.post(f"{account}/reset", **override)
            assert reset.status_code == 200 and reset.json()["name"] == ACCOUNT, reset.text
            for method in ("GET", "POST"):
                # /admin/keys/{id} answers DELETE only: an override must not reach it.
                assert admin.request(method, key, **override).status_code == 405
            guarded.passed("method overrides with the right key: ignored", 5)
    assert _state(guarded.stack) == before


def test_cors_grants_no_foreign_origin(guarded: Guarded) -> None:
    """A page on another origin must not be able to script the admin API from an operator's
    browser: preflights get no grant, and answers (even successful ones) carry no
    `Access-Control-Allow-Origin`, neither `*` nor the caller's origin echoed back."""
    ops = _admin_ops(guarded)
    spreader = Spreader(guarded)
    origins = ("https://evil.example", "null", "http://127.0.0.1.evil.example")
    try:
        for op, origin in itertools.product(ops, origins):
            path = _path_of(guarded, op.path)
            preflight = spreader.request("OPTIONS", path, headers={
                "Origin": origin, "Access-Control-Request-Method": op.method,
                "Access-Control-Request-Headers": "x-admin-key, content-type"})
            assert preflight.status_code in (401, 405), preflight.text
            assert_no_cors(preflight)
            plain = spreader.request(op.method, path, headers={"Origin": origin})
            assert plain.status_code == 401, plain.text
            assert_no_cors(plain)
            guarded.passed("CORS preflights and foreign Origin: no grant", 2)
    finally:
        spreader.close()
    with guarded.stack.admin() as admin:
        for op in ops:
            if op.method == "GET":  # with the right key: answered, still without a grant
                answer = admin.get(_path_of(guarded, op.path),
                                   headers={"Origin": "https://evil.example"})
                assert answer.status_code == 200, answer.text
                assert_no_cors(answer)


def _assert_locked(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text


def _comparable(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, headers, response.content


def test_the_brute_force_limit_holds(guarded: Guarded) -> None:
    stack = guarded.stack
    right = {"X-Admin-Key": stack.admin_key}
    guesser, operator = next(guarded.addresses), next(guarded.addresses)
    # Spread over several routes: the limit counts failures per address, not per route.
    routes = ["/admin/accounts", "/admin/keys", "/metrics", "/admin/logs", "/admin/stats"]
    with stack.kestrel.client_from(guesser) as client:
        for n in range(MAX_FAILURES):
            wrong = {"X-Admin-Key": f"guess-{n:02d}-{secrets.token_hex(8)}"}
            assert client.get(routes[n % len(routes)], headers=wrong).status_code == 401
        locked = client.get("/admin/accounts", headers=right)  # the 11th: the right key
        assert locked.status_code == 429, locked.text
        assert locked.json()["error"]["type"] == "rate_limit_error"
        retry_after = int(locked.headers["retry-after"])
        assert 1 <= retry_after <= FAILURE_WINDOW_SECONDS
        # The right key and a wrong one get the very same answer, on every admin route, and
        # the lock-out is keyed on the peer address, not on a header the guesser controls.
        spoofed = {**right, "X-Forwarded-For": operator, "X-Real-IP": operator,
                   "Forwarded": f"for={operator}"}
        for route in routes:
            for headers in (right, {"X-Admin-Key": "guess-again"}, spoofed):
                again = client.get(route, headers=headers)
                assert _comparable(again) == _comparable(locked), (route, headers)
                assert_no_cors(again)
        # Nothing else is locked: public routes, the proxy with a client key, the metrics token.
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/v1/models", headers={"x-api-key": stack.key,
                                                 "anthropic-version": "2023-06-01"}
                          ).status_code == 200
        assert client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
                          ).status_code == 200
        timings = interleaved({
            "right key": lambda: _assert_locked(client.get("/admin/keys", headers=right)),
            "wrong key": lambda: _assert_locked(client.get("/admin/keys", headers={
                "X-Admin-Key": "guess-timing"}))}, 60)
        time.sleep(1.1)
        later = client.get("/admin/accounts", headers=right)
        assert later.status_code == 429 and int(later.headers["retry-after"]) <= retry_after
    with stack.kestrel.client_from(operator, headers=right) as client:
        assert client.get("/admin/accounts").status_code == 200  # others are not locked out
    # The fastest of each: what the work itself costs, without the waits a busy machine adds
    # (a p20 still moved by half a millisecond when the whole suite ran beside it).
    fast = {name: min(times) for name, times in timings.items()}
    for name, times in timings.items():
        report("Lock-out timing", ("key while locked out", "n", "fastest ms", "median ms"),
               (name, len(times), f"{fast[name]:.3f}", f"{quantile(times, 0.5):.3f}"))
    # The lock-out answers before comparing keys: the same work for both. A generous bound; a
    # key comparison (nanoseconds) could never be seen here, a database write would.
    assert abs(fast["right key"] - fast["wrong key"]) < 0.5, fast
    guarded.passed("brute force: 10 failures, then locked out",
                   MAX_FAILURES + 1 + 3 * len(routes) + 2 * 60 + 1)


def test_the_lock_out_lasts_exactly_its_window(tmp_path: Path) -> None:
    """The window's end, which the live test cannot wait a minute for: Kestrel's own guard, fed
    the times a minute of guessing would give it. Two guards on one database file count
    together, as two processes do."""
    async def body(db: Database) -> None:
        guard = AdminGuard("the-right-admin-key-0123", AdminFailureStore(db))
        sibling = AdminGuard("the-right-admin-key-0123", AdminFailureStore(db))
        start = 1_000_000.0
        for n in range(MAX_FAILURES):
            with pytest.raises(AuthenticationError, match="invalid admin key"):
                await (guard if n % 2 else sibling).check("a-wrong-guess-0123456",
                                                          "198.51.100.7", start + n)
        last_failure = start + MAX_FAILURES - 1
        for moment in (last_failure + 0.001, start + FAILURE_WINDOW_SECONDS - 0.001):
            for either in (guard, sibling):
                with pytest.raises(RateLimited) as locked:
                    await either.check("the-right-admin-key-0123", "198.51.100.7", moment)
                assert 0 < (locked.value.retry_after or 0) <= FAILURE_WINDOW_SECONDS
        await guard.check("the-right-admin-key-0123", "203.0.113.9", start + 30)  # another
        # the oldest failure leaves the window: nine remain, below the limit
        await sibling.check("the-right-admin-key-0123", "198.51.100.7",
                            start + FAILURE_WINDOW_SECONDS)
    with_db(tmp_path / "k.db", body)


def test_behind_a_trusted_proxy_the_lock_out_counts_each_client_apart(tmp_path: Path) -> None:
    """Every client comes from the proxy's address: a lock-out keyed on it would shut everyone
    out after one person's ten wrong keys. With TRUSTED_PROXIES it counts the forwarded
    client; without it (the test above) the header is never believed."""
    with running_stack(tmp_path, accounts=(), env={"TRUSTED_PROXIES": "127.0.0.0/8"}) as stack:
        def admin_get(client_ip: str, key: str) -> int:
            with stack.kestrel.client(headers={"X-Admin-Key": key,
                                               "X-Forwarded-For": client_ip}) as client:
                return client.get("/admin/accounts").status_code
        for n in range(MAX_FAILURES):
            assert admin_get("203.0.113.5", f"guess-{n}") == 401
        assert admin_get("203.0.113.5", stack.admin_key) == 429  # the guesser is locked out
        assert admin_get("203.0.113.6", stack.admin_key) == 200  # the operator is not
