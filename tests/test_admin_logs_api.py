"""`/admin/logs` and `/admin/stats` over a real socket: paging, filters, validation, schemas."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest

from kestrel.api.admin import ERROR
from kestrel.api.admin_logs import LOG_PAGE, STATS, LogsApi
from kestrel.api.errors import Surface, error_response
from kestrel.api.openapi import build_document
from kestrel.domain import Attempt, KestrelError, RequestLog
from kestrel.http import Request, Response, Router
from kestrel.http.server import Server
from kestrel.store.database import Database
from kestrel.store.request_logs import RequestLogStore
from kestrel.store.usage import UsageStore

# Deliberately not on a minute boundary, so bucket alignment shows.
NOW = 1_750_000_123.25


def entry(ts: float, **fields: Any) -> RequestLog:
    return RequestLog(**{"ts": ts, "request_id": f"req-{ts}", "route": "/v1/messages",
                         "status": 200, "latency_ms": 100.0, **fields})


@contextlib.asynccontextmanager
async def logs_server(path: Path, rows: list[RequestLog]) -> AsyncIterator[httpx.AsyncClient]:
    """The two endpoints behind a real HTTP server, errors rendered as the app renders them."""
    db = await Database.open(path)
    try:
        store = RequestLogStore(db)
        await store.insert_many(rows)
        router = Router()
        for endpoint in LogsApi(store, UsageStore(db), lambda: NOW).endpoints():
            router.add(endpoint.method, endpoint.path, endpoint.handler)

        async def handle(request: Request) -> Response:
            try:
                handler, request.path_params = router.match(request.method, request.path)
                return await handler(request)
            except KestrelError as exc:
                return error_response(Surface.ADMIN, exc)

        server = Server(handle)
        await server.start("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                yield client
        finally:
            await server.shutdown()
    finally:
        await db.close()


def run(path: Path, rows: list[RequestLog],
        body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with logs_server(path, rows) as client:
            await body(client)
    asyncio.run(main())


def conforms(schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(value)


def sample_rows() -> list[RequestLog]:
    return [
        entry(NOW - 600, account_id=1, key_id=5, model="claude opus", stream=True,
              input_tokens=10, output_tokens=20, ttfb_ms=50.0, client="10.0.0.1",
              user_agent="claude-cli/1.0",
              attempts=(Attempt(account_id=2, status=529, error_type="overloaded_error",
                                duration_ms=30.0),
                        Attempt(account_id=1, status=200, error_type=None, duration_ms=70.5))),
        entry(NOW - 500, account_id=2, key_id=5, model="haiku", status=529,
              error_type="overloaded_error",
              attempts=(Attempt(account_id=2, status=None, error_type="timeout",
                                duration_ms=1000.0),)),
        entry(NOW - 400, account_id=1, key_id=6, model="claude opus"),
        entry(NOW - 300, account_id=1, key_id=6, model="haiku", status=401),
        entry(NOW - 200, account_id=None, key_id=6, model=None, status=503,
              error_type="no_account_available"),
        entry(NOW - 100, account_id=1, key_id=5, model="claude opus", cache_read_tokens=7),
        entry(NOW - 3 * 3600, account_id=1, key_id=5, model="claude opus"),
    ]


def test_pages_follow_the_cursor_and_every_answer_fits_the_schema(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
            response = await client.get("/admin/logs", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            conforms(LOG_PAGE, page)
            seen += page["data"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len({row["id"] for row in seen}) == len(seen) == 7
        assert [row["request_id"] for row in seen] == [
            r.request_id for r in sorted(sample_rows(), key=lambda r: -r.ts)]

        first = next(row for row in seen if row["request_id"] == f"req-{NOW - 600}")
        assert first["ts"] == datetime.fromtimestamp(NOW - 600, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.250Z")
        assert (first["stream"], first["ttfb_ms"], first["client"], first["user_agent"]) == (
            True, 50.0, "10.0.0.1", "claude-cli/1.0")
        assert first["attempts"] == [
            {"account_id": 2, "status": 529, "error_type": "overloaded_error",
             "duration_ms": 30.0, "proxy": None, "message": None, "account_name": None},
            {"account_id": 1, "status": 200, "error_type": None, "duration_ms": 70.5,
             "proxy": None, "message": None, "account_name": None}]

        default = (await client.get("/admin/logs", params={"unknown": "ignored"})).json()
        assert len(default["data"]) == 7 and default["next_cursor"] is None
    run(tmp_path / "k.db", sample_rows(), body)


def _iso(ts: float, hours: int = 0) -> str:
    """RFC 3339: in UTC with `Z`, or in another zone with its offset."""
    if hours == 0:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return datetime.fromtimestamp(ts, timezone(timedelta(hours=hours))).isoformat()


# One server for the whole table: each case is one request, the setup is what costs time.
FILTERS = [
    ("account_id=1", [100, 300, 400, 600, 10800]),
    ("key_id=6", [200, 300, 400]),
    ("status=529", [500]),
    ("model=" + quote("claude opus"), [100, 400, 600, 10800]),
    ("model=claude+opus&key_id=5&account_id=1", [100, 600, 10800]),
    (f"since={NOW - 400}", [100, 200, 300, 400]),  # epoch seconds, inclusive
    (f"until={NOW - 400}", [500, 600, 10800]),  # exclusive
    # RFC 3339 in UTC and with an offset name the same moments
    (f"since={quote(_iso(NOW - 500))}&until={quote(_iso(NOW - 200))}", [300, 400, 500]),
    (f"since={quote(_iso(NOW - 500, hours=2))}", [100, 200, 300, 400, 500]),
    (f"since={quote(_iso(NOW - 500, hours=-5))}", [100, 200, 300, 400, 500]),
    ("status=404", []),
]


def test_each_filter_selects_its_rows(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        for query, expected_ages in FILTERS:
            response = await client.get(f"/admin/logs?{query}")
            assert response.status_code == 200, (query, response.text)
            conforms(LOG_PAGE, response.json())
            ages = [round(NOW - datetime.fromisoformat(row["ts"]).timestamp())
                    for row in response.json()["data"]]
            assert ages == expected_ages, query
    run(tmp_path / "k.db", sample_rows(), body)


BAD_PARAMETERS = [
    ("/admin/logs?limit=0", "limit"),
    ("/admin/logs?limit=501", "limit"),
    ("/admin/logs?limit=x", "limit"),
    ("/admin/logs?limit=", "limit"),
    ("/admin/logs?limit=1.5", "limit"),
    ("/admin/logs?limit=1&limit=2", "limit"),
    ("/admin/logs?account_id=-1", "account_id"),
    ("/admin/logs?key_id=99999999999999999999", "key_id"),
    ("/admin/logs?status=99", "status"),
    ("/admin/logs?model=", "model"),
    ("/admin/logs?since=yesterday", "since"),
    ("/admin/logs?since=2025-13-01T00:00:00Z", "since"),
    ("/admin/logs?since=2025-01-01T00:00:00", "since"),  # no offset: whose midnight?
    ("/admin/logs?until=nan", "until"),
    ("/admin/logs?since=200&until=100", "until"),
    ("/admin/logs?cursor=not-a-cursor", "cursor"),
    ("/admin/stats?window=2d", "window"),
    ("/admin/stats?window=", "window"),
]


def test_bad_parameters_are_422_naming_the_field(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        for path, field in BAD_PARAMETERS:
            response = await client.get(path)
            assert response.status_code == 422, (path, response.text)
            conforms(ERROR, response.json())
            error = response.json()["error"]
            assert (error["type"], error["field"]) == ("invalid_request_error", field), path
            assert field in error["message"], path
    run(tmp_path / "k.db", [], body)


@pytest.mark.parametrize(("window", "buckets", "bucket_seconds", "requests"), [
    (None, 96, 900, 7),  # default 24h
    ("1h", 60, 60, 6),
    ("24h", 96, 900, 7),
    ("7d", 168, 3600, 8),
])
def test_stats_windows(tmp_path: Path, window: str | None, buckets: int, bucket_seconds: int,
                       requests: int) -> None:
    rows = [*sample_rows(), entry(NOW - 3 * 86400, account_id=3)]

    async def body(client: httpx.AsyncClient) -> None:
        response = await client.get("/admin/stats", params={"window": window} if window else {})
        assert response.status_code == 200, response.text
        stats = response.json()
        conforms(STATS, stats)
        assert stats["window"] == (window or "24h")
        assert stats["bucket_seconds"] == bucket_seconds
        since = datetime.fromisoformat(stats["since"]).timestamp()
        until = datetime.fromisoformat(stats["until"]).timestamp()
        # Whole buckets, the last one being the one that holds now.
        assert since % bucket_seconds == 0 and until % bucket_seconds == 0
        assert until - bucket_seconds <= NOW < until
        assert until - since == buckets * bucket_seconds
        series = stats["series"]
        assert len(series) == buckets
        assert [datetime.fromisoformat(b["start"]).timestamp() for b in series] == [
            since + i * bucket_seconds for i in range(buckets)]
        totals = stats["totals"]
        assert totals["requests"] == requests
        for name in ("requests", "errors", "input_tokens", "output_tokens",
                     "cache_read_tokens", "cache_creation_tokens"):
            assert sum(b[name] for b in series) == totals[name]
            for group in ("accounts", "keys", "models"):
                assert sum(g[name] for g in stats[group]) == totals[name]
        assert totals["errors"] == 3
        assert totals["errors_by_type"] == {"http_401": 1, "no_account_available": 1,
                                            "overloaded_error": 1}
        assert stats["accounts"][0]["account_id"] == 1
    run(tmp_path / "k.db", rows, body)


def test_an_empty_database_has_a_full_series_of_zeros(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        stats = (await client.get("/admin/stats?window=1h")).json()
        conforms(STATS, stats)
        assert stats["totals"]["requests"] == 0 and stats["totals"]["p95_latency_ms"] is None
        assert (stats["accounts"], stats["keys"], stats["models"]) == ([], [], [])
        assert len(stats["series"]) == 60
        assert all(b["requests"] == 0 and b["p50_latency_ms"] is None for b in stats["series"])
        page = (await client.get("/admin/logs")).json()
        assert page == {"data": [], "next_cursor": None}
    run(tmp_path / "k.db", [], body)


def test_openapi_documents_the_query_parameters_and_valid_schemas(tmp_path: Path) -> None:
    async def main() -> dict[str, Any]:
        db = await Database.open(tmp_path / "k.db")
        try:
            api = LogsApi(RequestLogStore(db), UsageStore(db), lambda: NOW)
            return build_document(api.endpoints())
        finally:
            await db.close()
    document = asyncio.run(main())
    logs = document["paths"]["/admin/logs"]["get"]
    assert {p["name"] for p in logs["parameters"] if p["in"] == "query"} == {
        "limit", "cursor", "account_id", "key_id", "status", "model", "instance", "since",
        "until"}
    stats = document["paths"]["/admin/stats"]["get"]
    assert [p["name"] for p in stats["parameters"]] == ["window"]
    assert logs["security"] == stats["security"] == [{"adminKey": []}]
    assert logs["tags"] == stats["tags"] == ["logs"]
    for schema in (LOG_PAGE, STATS, *(p["schema"] for p in logs["parameters"])):
        jsonschema.Draft202012Validator.check_schema(schema)
