"""Request logs on a real database file: round trip, filters, paging, last-used, prune, stats."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kestrel.domain import Attempt, ClientError, RequestLog, ValidationError
from kestrel.store.database import Database
from kestrel.store.keys import KeyStore
from kestrel.store.request_logs import (
    MAX_MESSAGE_CHARS,
    PRUNE_CHUNK,
    RequestLogStore,
    StoredLog,
    encode_cursor,
    percentile,
    summarize,
)

from support.db import with_db

T = TypeVar("T")


def with_store(path: Path, body: Callable[[RequestLogStore, Database], Awaitable[T]]) -> T:
    return with_db(path, lambda db: body(RequestLogStore(db), db))


def entry(ts: float, **fields: Any) -> RequestLog:
    return RequestLog(**{"ts": ts, "request_id": f"req-{ts}", "route": "/v1/messages",
                         "status": 200, **fields})


async def everything(store: RequestLogStore, **filters: Any) -> list[StoredLog]:
    """All pages of a query, followed cursor by cursor."""
    rows: list[StoredLog] = []
    cursor = None
    while True:
        page, cursor = await store.query(limit=500, cursor=cursor, **filters)
        rows += page
        if cursor is None:
            return rows


def test_every_field_round_trips(db_target: str) -> None:
    full = RequestLog(
        ts=1_700_000_000.123456, request_id="req_abc", route="/v1/chat/completions", status=200,
        key_id=3, account_id=7, model="claude-sonnet-4-5", stream=True, error_type=None,
        input_tokens=10, output_tokens=20, cache_read_tokens=30, cache_creation_tokens=40,
        latency_ms=1234.5, ttfb_ms=321.25, client="10.0.0.1", user_agent="claude-cli/1.0",
        attempts=(Attempt(account_id=9, status=None, error_type="connect_error",
                          duration_ms=12.5, account_name="spare"),
                  Attempt(account_id=8, status=429, error_type="rate_limit_error",
                          duration_ms=3.0, message="Number of requests has exceeded your rate "
                          "limit", account_name="team"),
                  Attempt(account_id=7, status=200, error_type=None, duration_ms=1200.0,
                          account_name="work")))
    bare = RequestLog(ts=1.5, request_id="req_bare", route="/v1/messages", status=401,
                      error_type="unknown_key", error_message="invalid or revoked API key: "
                      "kst_…AbCd")

    async def body(store: RequestLogStore, db: Database) -> None:
        await store.insert_many([full, bare])
        await store.insert_many([])  # nothing to do, and no error
        rows, cursor = await store.query(limit=10)
        assert cursor is None
        assert [r.log for r in rows] == [full, bare]  # newest first
        assert rows[0].id != rows[1].id and isinstance(rows[0].log, RequestLog)
        stored = await db.read(lambda c: c.execute(
            "SELECT stream, attempts FROM request_logs WHERE request_id = 'req_abc'").fetchone())
        assert stored[0] == 1
        assert stored[1].startswith('[{"account_id":9,"status":null,')
    with_store(db_target, body)


def grid() -> list[RequestLog]:
    """36 rows over every combination of account, key, model and status."""
    rows = []
    ts = 1000.0
    for account in (1, 2, None):
        for key in (5, 6):
            for model in ("opus", "haiku"):
                for status in (200, 429, 500):
                    rows.append(entry(ts, account_id=account, key_id=key, model=model,
                                      status=status))
                    ts += 10
    return rows


def test_each_row_names_its_instance_and_the_filter_finds_one_instance(db_target: str) -> None:
    """Two instances (two stores with their names) writing into one database."""
    async def body(_: RequestLogStore, db: Database) -> tuple[list[StoredLog], list[StoredLog]]:
        east, west = RequestLogStore(db, instance="east:8080"), RequestLogStore(db,
                                                                                instance="west:8080")
        await east.insert_many([entry(1.0), entry(3.0)])
        await west.insert_many([entry(2.0)])
        await RequestLogStore(db).insert_many([entry(4.0)])  # a row from before names
        return await everything(east), await everything(east, instance="west:8080")
    every, west_only = with_store(db_target, body)
    assert [(r.log.ts, r.instance) for r in every] == [
        (4.0, None), (3.0, "east:8080"), (2.0, "west:8080"), (1.0, "east:8080")]
    assert [(r.log.ts, r.instance) for r in west_only] == [(2.0, "west:8080")]


@pytest.mark.parametrize("filters", [
    {"account_id": 1},
    {"account_id": 2, "status": 429},
    {"key_id": 6},
    {"model": "haiku"},
    {"model": "haiku", "key_id": 5, "account_id": 1},
    {"status": 500},
    {"since": 1100.0},
    {"until": 1100.0},
    {"since": 1050.0, "until": 1200.0, "model": "opus"},
    {"model": "nobody"},
    {"account_id": 3},
])
def test_each_filter_returns_exactly_its_rows(db_target: str, filters: dict[str, Any]) -> None:
    rows = grid()

    def wanted(row: RequestLog) -> bool:
        return all(
            (row.ts >= value if name == "since" else row.ts < value if name == "until"
             else getattr(row, name) == value)
            for name, value in filters.items())

    async def body(store: RequestLogStore, db: Database) -> list[StoredLog]:
        await store.insert_many(rows)
        return await everything(store, **filters)
    found = with_store(db_target, body)
    expected = sorted((r for r in rows if wanted(r)), key=lambda r: -r.ts)
    assert [r.log for r in found] == expected


def test_cursor_pages_through_everything_once_even_with_equal_timestamps(db_target: str) -> None:
    # Three rows share each timestamp, and they arrive out of ts order across batches.
    batches = [[entry(t, request_id=f"{t}-{i}") for t in (20.0, 10.0) for i in range(3)],
               [entry(t, request_id=f"{t}-{i}", model="m") for t in (30.0, 15.0)
                for i in range(3)]]

    async def body(store: RequestLogStore, db: Database) -> None:
        for batch in batches:
            await store.insert_many(batch)
        inserted = [r for b in batches for r in b]
        for limit, pages in ((5, 3), (4, 3), (6, 2), (12, 1)):
            seen: list[StoredLog] = []
            cursor = None
            count = 0
            while True:
                page, cursor = await store.query(limit=limit, cursor=cursor)
                count += 1
                assert len(page) == limit or cursor is None
                seen += page
                if cursor is None:
                    break
            # 12 rows: 5+5+2, 4+4+4 (no empty fourth page), 6+6, 12.
            assert count == pages, limit
            assert len({r.id for r in seen}) == len(seen) == len(inserted)
            assert [(r.log.ts, r.id) for r in seen] == sorted(((r.log.ts, r.id) for r in seen),
                                                          reverse=True)
        # With a filter the cursor keeps to the filtered rows.
        page1, cursor = await store.query(limit=2, model="m")
        page2, cursor2 = await store.query(limit=2, model="m", cursor=cursor)
        page3, cursor3 = await store.query(limit=2, model="m", cursor=cursor2)
        assert cursor3 is None
        assert [r.log.request_id for r in page1 + page2 + page3] == [
            "30.0-2", "30.0-1", "30.0-0", "15.0-2", "15.0-1", "15.0-0"]
    with_store(db_target, body)


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "", "x", "!!!!", b64("12"), b64("1.5:abc"), b64("1.5:-1"), b64("nan:3"), b64("inf:3"),
    b64("1.5:2:3"), b64("1.5:99999999999999999999"), b64("1.50:3"), "\u00e9t\u00e9",
])
def test_an_invalid_cursor_is_a_client_error_on_the_cursor_field(db_target: str,
                                                                 cursor: str) -> None:
    async def body(store: RequestLogStore, db: Database) -> None:
        with pytest.raises(ValidationError) as caught:
            await store.query(limit=5, cursor=cursor)
        assert isinstance(caught.value, ClientError)
        assert (caught.value.message, caught.value.field) == ("invalid cursor", "cursor")
        # A well-formed cursor past the last row is simply an empty last page.
        assert await store.query(limit=5, cursor=encode_cursor(0.0, 0)) == ([], None)
    with_store(db_target, body)


def test_last_used_at_only_moves_forward_and_costs_one_update_per_id(tmp_path: Path) -> None:
    async def body(store: RequestLogStore, db: Database) -> None:
        key, _ = await KeyStore(db).create(name="k", now=1.0)
        other, _ = await KeyStore(db).create(name="other", now=1.0)
        await db.write(lambda c: c.execute(
            "INSERT INTO accounts (id, name, type, credential, credential_hint, created_at, "
            "updated_at) VALUES (4, 'a', 'api_key', x'00', '…', 1, 1)"))

        async def last_used() -> tuple[float | None, float | None, float | None]:
            def run(c: sqlite3.Connection) -> tuple[float | None, float | None, float | None]:
                keys = "SELECT last_used_at FROM api_keys WHERE id = ?"
                return (c.execute(keys, (key.id,)).fetchone()[0],
                        c.execute(keys, (other.id,)).fetchone()[0],
                        c.execute("SELECT last_used_at FROM accounts WHERE id = 4").fetchone()[0])
            return await db.read(run)

        await store.insert_many([entry(200.0, key_id=key.id, account_id=4),
                                 entry(100.0, key_id=key.id, account_id=4),
                                 entry(150.0, key_id=key.id)])
        assert await last_used() == (200.0, None, 200.0)
        # An older batch (a slow stream logged late) leaves the newer time in place.
        await store.insert_many([entry(120.0, key_id=key.id, account_id=4)])
        assert await last_used() == (200.0, None, 200.0)
        # History survives deleted keys and accounts: ids that match nothing are fine.
        await store.insert_many([entry(300.0, key_id=key.id), entry(250.0, key_id=other.id,
                                                                      account_id=4),
                                 entry(400.0, key_id=999, account_id=999)])
        assert await last_used() == (300.0, 250.0, 250.0)
        rows, _ = await store.query(limit=10, key_id=999)
        assert [r.log.account_id for r in rows] == [999]
    with_store(tmp_path / "k.db", body)


def test_prune_deletes_older_rows_in_chunks_and_counts_them(db_target: str) -> None:
    total = PRUNE_CHUNK * 2 + 500

    async def body(store: RequestLogStore, db: Database) -> None:
        await store.insert_many([entry(float(i)) for i in range(total)])
        assert await store.prune(before=0.0) == 0
        assert await store.prune(before=float(total - 100)) == total - 100
        rows = await everything(store)
        assert [r.log.ts for r in rows] == [float(i) for i in reversed(range(total - 100, total))]
        assert await store.prune(before=float(total - 100)) == 0
    with_store(db_target, body)


@pytest.mark.parametrize(("values", "p", "expected"), [
    ([], 50, None),
    ([7.0], 0, 7.0),
    ([7.0], 50, 7.0),
    ([7.0], 100, 7.0),
    # the textbook example of the nearest-rank method
    ([15, 20, 35, 40, 50], 5, 15),
    ([15, 20, 35, 40, 50], 30, 20),
    ([15, 20, 35, 40, 50], 40, 20),
    ([15, 20, 35, 40, 50], 50, 35),
    ([15, 20, 35, 40, 50], 100, 50),
    ([1, 2, 3, 4], 50, 2),
    ([1, 2, 3, 4], 75, 3),
    ([1, 2, 3, 4], 76, 4),
    (list(range(1, 11)), 0, 1),
    (list(range(1, 11)), 90, 9),
    (list(range(1, 11)), 95, 10),
    # 95 * 20 / 100 is exactly 19: the 19th value, not a float's ceiling of 19.000…01
    (list(range(1, 21)), 95, 19),
    (list(range(1, 101)), 95, 95),
    (list(range(1, 1001)), 99.9, 999),
])
def test_percentile_nearest_rank(values: list[float], p: float, expected: float | None) -> None:
    assert percentile(values, p) == expected


@pytest.mark.parametrize("p", [-1, 100.5])
def test_percentile_refuses_out_of_range(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], p)


def test_summarize_refuses_an_impossible_window() -> None:
    for since, until, bucket in ((10.0, 10.0, 1), (0.0, 10.0, 0), (0.0, 1e9, 1)):
        with pytest.raises(ValueError):
            summarize([], since=since, until=until, bucket_seconds=bucket)


def stats_rows() -> list[RequestLog]:
    """Ten requests in [1000, 1060) plus two just outside it."""
    rows = [
        entry(1000.0, account_id=1, key_id=5, model="opus", latency_ms=100, ttfb_ms=10,
              input_tokens=1, output_tokens=2, cache_read_tokens=3, cache_creation_tokens=4),
        entry(1001.0, account_id=1, key_id=5, model="opus", latency_ms=200, ttfb_ms=20,
              input_tokens=10, output_tokens=20, cost_usd=0.5),
        entry(1005.0, account_id=2, key_id=5, model="haiku", latency_ms=300, ttfb_ms=30,
              input_tokens=100, cost_usd=0.125,
              attempts=(Attempt(3, None, "connect", 5.0), Attempt(2, 200, None, 30.0))),
        entry(1019.9, account_id=2, key_id=6, model="haiku", latency_ms=400, ttfb_ms=None,
              status=529, error_type="overloaded_error",
              attempts=(Attempt(3, 429, "rate_limit_error", 4.0),
                        Attempt(2, 529, "overloaded_error", 9.0))),
        entry(1020.0, account_id=None, key_id=6, model="opus", latency_ms=5, status=503,
              error_type="no_account_available"),
        entry(1030.0, account_id=1, key_id=6, model="opus", latency_ms=600, ttfb_ms=60,
              status=200, error_type="stream_interrupted", output_tokens=7),
        entry(1031.0, account_id=1, key_id=None, model=None, latency_ms=1, status=401),
        entry(1050.0, account_id=1, key_id=5, model="opus", latency_ms=700, ttfb_ms=70),
        entry(1055.0, account_id=1, key_id=5, model="opus", latency_ms=800, ttfb_ms=80),
        entry(1059.999, account_id=1, key_id=5, model="opus", latency_ms=900, ttfb_ms=90,
              cache_read_tokens=1000),
    ]
    outside = [entry(999.999, account_id=1, latency_ms=5000, cost_usd=7.0),  # before since
               entry(1060.0, account_id=1, latency_ms=5000)]  # `until` is exclusive
    return rows + outside


def test_stats_totals_groups_percentiles_and_series(db_target: str) -> None:
    async def body(store: RequestLogStore, db: Database) -> dict[str, Any]:
        await store.insert_many(stats_rows())
        return await store.stats(since=1000.0, until=1060.0, bucket_seconds=20)
    stats = with_store(db_target, body)

    assert (stats["since"], stats["until"], stats["bucket_seconds"]) == (1000.0, 1060.0, 20)
    assert stats["totals"] == {
        # the 529, the 503 of an empty pool and the broken stream are the pool's; the 401 is not
        "requests": 10, "errors": 4, "pool_errors": 3, "client_errors": 1,
        "errors_by_type": {"http_401": 1, "no_account_available": 1, "overloaded_error": 1,
                           "stream_interrupted": 1},
        "input_tokens": 111, "output_tokens": 29, "cache_read_tokens": 1003,
        "cache_creation_tokens": 4, "cost_usd": 0.625,
        # latencies sorted: 1 5 100 200 300 400 600 700 800 900 → rank 5 and rank 10
        "p50_latency_ms": 300.0, "p95_latency_ms": 900.0,
        # ttfbs (7 of them): 10 20 30 60 70 80 90 → rank 4 and rank 7
        "p50_ttfb_ms": 60.0, "p95_ttfb_ms": 90.0,
    }
    accounts = {g["account_id"]: g for g in stats["accounts"]}
    # busiest first; account 3 served nothing, but was tried twice
    assert [g["account_id"] for g in stats["accounts"]] == [1, 2, None, 3]
    assert {k: accounts[3][k] for k in ("requests", "attempts", "served", "failed",
                                        "failures_by_type", "last_failure_at")} == {
        "requests": 0, "attempts": 2, "served": 0, "failed": 2,
        "failures_by_type": {"connect": 1, "rate_limit_error": 1}, "last_failure_at": 1019.9}
    assert {k: accounts[2][k] for k in ("attempts", "served", "failed", "last_failure_at")} == {
        "attempts": 2, "served": 1, "failed": 1, "last_failure_at": 1019.9}
    assert (accounts[1]["requests"], accounts[1]["errors"], accounts[1]["p50_latency_ms"],
            accounts[1]["p95_ttfb_ms"]) == (7, 2, 600.0, 90.0)
    assert accounts[2]["errors_by_type"] == {"overloaded_error": 1}
    assert accounts[2]["p50_ttfb_ms"] == 30.0  # the one without a first byte has no ttfb
    assert accounts[None]["p50_ttfb_ms"] is None
    assert [g["key_id"] for g in stats["keys"]] == [5, 6, None]
    models = {g["model"]: g for g in stats["models"]}
    assert (models["opus"]["requests"], models["haiku"]["requests"],
            models[None]["requests"]) == (7, 2, 1)
    assert models["opus"]["cache_read_tokens"] == 1003
    for name in ("accounts", "keys", "models"):
        for field in ("requests", "errors", "input_tokens", "output_tokens",
                      "cache_read_tokens", "cache_creation_tokens", "cost_usd"):
            assert sum(g[field] for g in stats[name]) == stats["totals"][field], (name, field)
    assert (models["opus"]["cost_usd"], models["haiku"]["cost_usd"]) == (0.5, 0.125)

    series = stats["series"]
    assert [b["start"] for b in series] == [1000.0, 1020.0, 1040.0]
    assert [b["requests"] for b in series] == [4, 3, 3]
    assert [b["errors"] for b in series] == [1, 3, 0]
    assert [(b["pool_errors"], b["client_errors"]) for b in series] == [(1, 0), (2, 1), (0, 0)]
    assert [(b["p50_ttfb_ms"], b["p95_ttfb_ms"]) for b in series] == [
        (20.0, 30.0), (60.0, 60.0), (80.0, 90.0)]
    assert [(b["p50_latency_ms"], b["p95_latency_ms"]) for b in series] == [
        (200.0, 400.0), (5.0, 600.0), (800.0, 900.0)]
    for field in ("requests", "errors", "pool_errors", "client_errors", "input_tokens",
                  "output_tokens", "cache_read_tokens", "cache_creation_tokens", "cost_usd"):
        assert sum(b[field] for b in series) == stats["totals"][field], field


def test_stats_of_an_empty_window_has_every_bucket_with_zeros(db_target: str) -> None:
    async def body(store: RequestLogStore, db: Database) -> tuple[dict[str, Any], ...]:
        empty_db = await store.stats(since=0.0, until=3600.0, bucket_seconds=60)
        await store.insert_many(stats_rows())
        # A window with rows on both sides but none inside; the last bucket is a partial one.
        elsewhere = await store.stats(since=2000.0, until=2090.0, bucket_seconds=60)
        return empty_db, elsewhere
    empty_db, elsewhere = with_store(db_target, body)

    zeros = {"requests": 0, "errors": 0, "pool_errors": 0, "client_errors": 0,
             "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
             "cache_creation_tokens": 0, "cost_usd": 0.0, "p50_latency_ms": None,
             "p95_latency_ms": None, "p50_ttfb_ms": None, "p95_ttfb_ms": None}
    assert empty_db["totals"] == {**zeros, "errors_by_type": {}}
    assert (empty_db["accounts"], empty_db["keys"], empty_db["models"]) == ([], [], [])
    assert empty_db["series"] == [{"start": 60.0 * i, **zeros} for i in range(60)]
    assert elsewhere["series"] == [{"start": 2000.0, **zeros}, {"start": 2060.0, **zeros}]
    assert elsewhere["totals"]["requests"] == 0


def test_the_schema_has_the_indexes_the_queries_need(tmp_path: Path) -> None:
    async def body(store: RequestLogStore, db: Database) -> list[str]:
        def plans(conn: sqlite3.Connection) -> list[str]:
            out = []
            for where in ("", "key_id = 1 AND", "status = 200 AND",
                          # The account and model filters match text, which no index serves:
                          # they walk the `ts` index, in the listing's order.
                          "(tried LIKE '%,1,%' OR (tried IS NULL AND account_id = 1)) AND",
                          "LOWER(model) LIKE '%m%' ESCAPE '!' AND"):
                sql = (f"EXPLAIN QUERY PLAN SELECT * FROM request_logs WHERE {where} "
                       "(ts, id) < (5, 5) ORDER BY ts DESC, id DESC LIMIT 51")
                out += [row[3] for row in conn.execute(sql)]
            return out
        return await db.read(plans)
    plans = with_store(tmp_path / "k.db", body)
    # Each listing is an index range scan in the wanted order: no table scan, no sort.
    assert len(plans) == 5
    assert all(p.startswith("SEARCH request_logs USING INDEX") for p in plans), plans


def test_the_account_filter_finds_every_request_an_account_tried(db_target: str) -> None:
    """Filtering by an account that only failed (429, then another served) finds the request;
    rows from before `tried` was kept match the account that served them."""
    rows = [entry(1.0, account_id=2, attempts=(Attempt(1, 429, "rate_limit_error", 1.0),
                                               Attempt(2, 200, None, 5.0))),
            entry(2.0, account_id=1, attempts=(Attempt(1, 200, None, 5.0),)),
            entry(3.0, status=429, error_type="all_cooling_down",
                  attempts=(Attempt(12, 529, "overloaded_error", 1.0),
                            Attempt(1, 429, "rate_limit_error", 1.0))),
            entry(4.0, account_id=2, attempts=(Attempt(2, 200, None, 5.0),))]

    async def body(store: RequestLogStore, db: Database) -> dict[int, list[float]]:
        await store.insert_many(rows)
        await db.write(lambda c: c.execute(  # as a row written before schema 9
            "INSERT INTO request_logs (ts, request_id, route, status, account_id, stream, "
            "latency_ms, attempts) VALUES (5.0, 'old', '/v1/messages', 200, 1, 0, 1, '[]')"))
        return {account: [r.log.ts for r in await everything(store, account_id=account)]
                for account in (1, 2, 12)}
    assert with_store(db_target, body) == {1: [5.0, 3.0, 2.0, 1.0], 2: [4.0, 1.0], 12: [3.0]}


def test_the_model_filter_matches_part_of_a_name_and_no_wildcards(db_target: str) -> None:
    models = ["claude-sonnet-4-5", "claude-sonnet-4-6", "claude-haiku-4-5", "CLAUDE-OPUS",
              "odd_model%", None]
    rows = [entry(float(i), model=model) for i, model in enumerate(models, start=1)]

    async def body(store: RequestLogStore, db: Database) -> dict[str, list[str | None]]:
        await store.insert_many(rows)
        return {wanted: [r.log.model for r in await everything(store, model=wanted)]
                for wanted in ("sonnet", "4-5", "opus", "_", "%", "d_m", "nothing")}
    assert with_store(db_target, body) == {
        "sonnet": ["claude-sonnet-4-6", "claude-sonnet-4-5"],
        "4-5": ["claude-haiku-4-5", "claude-sonnet-4-5"],
        "opus": ["CLAUDE-OPUS"],  # case does not matter, on either engine
        "_": ["odd_model%"], "%": ["odd_model%"], "d_m": ["odd_model%"], "nothing": []}


def test_error_messages_are_kept_to_one_bounded_line(db_target: str) -> None:
    page = "<html>\n<body>" + "gateway trouble " * 100 + "</body></html>"
    row = entry(1.0, status=502, error_type="api_error", error_message=page,
                attempts=(Attempt(1, 502, "api_error", 1.0, message=page),))

    async def body(store: RequestLogStore, db: Database) -> StoredLog:
        await store.insert_many([row])
        return (await everything(store))[0]
    stored = with_store(db_target, body)
    for message in (stored.log.error_message, stored.log.attempts[0].message):
        assert message is not None and len(message) == MAX_MESSAGE_CHARS
        assert "\n" not in message and message.startswith("<html> <body>gateway trouble")
        assert message.endswith("…")


def test_attempts_with_awkward_text_come_back_as_written(db_target: str) -> None:
    """The attempts column is JSON written as text around its values: quotes, backslashes,
    control characters, non-ASCII text and every optional field must come back as they went."""
    attempts = (
        Attempt(4, None, "proxy_connect", 0.125, proxy="http://user@proxy.example:3128",
                message='said "no" \\ twice\x01 é 😀', account_name='naïve "name" \\'),
        Attempt(5, 529, "overloaded_error", 0.001, account_name=None),
        Attempt(6, 200, None, 12345.5, account_name="plain"),
    )
    row = entry(1.0, status=200, account_id=6, attempts=attempts)

    async def body(store: RequestLogStore, db: Database) -> StoredLog:
        await store.insert_many([row])
        return (await everything(store))[0]
    assert with_store(db_target, body).log.attempts == attempts


def test_attempt_durations_are_kept_to_the_microsecond(db_target: str) -> None:
    durations = (11.234567891234567, 1e-7, 0.0004, 2.0, 1200)
    row = entry(1.0, attempts=tuple(Attempt(1, 529, "overloaded_error", d) for d in durations))

    async def body(store: RequestLogStore, db: Database) -> StoredLog:
        await store.insert_many([row])
        return (await everything(store))[0]
    stored = with_store(db_target, body).log.attempts
    assert [a.duration_ms for a in stored] == [11.235, 0.0, 0.0, 2.0, 1200.0]
