"""Request logs: batched inserts, a filtered newest-first listing, aggregate stats, pruning.

Rows arrive through `LogWriter` in batches, so the per-request cost on the database is a share of
one transaction. The same transaction moves `last_used_at` of the keys and accounts in the batch
forward, which is why "last used" costs no write per request either.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

from kestrel.domain import POOL_REFUSALS, Attempt, RequestLog, ValidationError, one_line
from kestrel.jsontext import value_text
from kestrel.store.database import Database
from kestrel.store.session import Session

# Rows deleted per write transaction by `prune`: each chunk takes a few milliseconds, so request
# log batches and admin writes queued behind a large prune wait for one chunk, not for all of it.
PRUNE_CHUNK = 5_000

# More buckets than any chart can draw; a guard against a caller asking for a year by the second.
MAX_BUCKETS = 10_000

_COLUMN_NAMES = ("ts", "request_id", "route", "status", "key_id", "account_id", "model",
                 "stream", "error_type", "input_tokens", "output_tokens", "cache_read_tokens",
                 "cache_creation_tokens", "latency_ms", "ttfb_ms", "client", "user_agent",
                 "attempts", "instance", "cost_usd", "priced", "error_message", "tried")
_COLUMNS = ", ".join(_COLUMN_NAMES)

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")

# An error message is kept to what a log line or a table cell can show: upstream messages are a
# sentence; a body quoted whole (an HTML page from a gateway) is not worth more than this.
MAX_MESSAGE_CHARS = 500


class StoredLog(NamedTuple):
    """A request log as stored: the `RequestLog`, its row id, and the instance that wrote it
    (None for rows older than INSTANCE_NAME)."""

    id: int
    log: RequestLog
    instance: str | None = None


def bounded(message: str | None) -> str | None:
    """One line of at most MAX_MESSAGE_CHARS characters; None for no message."""
    return one_line(message, MAX_MESSAGE_CHARS) or None


def _attempts_json(attempts: Iterable[Attempt]) -> str:
    """The `attempts` column: a JSON list with an object per attempt. Written as text around
    its values, as JSON reads it back: for a list of one small object, the encoder's own
    work was most of making a row's values.

    A duration is kept to the microsecond. The shortest text that reads back as the very
    same float takes arithmetic on big numbers for most durations, which is how a monotonic
    clock's difference comes out: 1.4 µs for one, a third of making the column, where three
    decimals take 0.3 µs."""
    tries = []
    for account_id, status, error_type, duration_ms, proxy, message, name in attempts:
        one = (f'{{"account_id":{value_text(account_id)},"status":{value_text(status)},'
               f'"error_type":{value_text(error_type)},"duration_ms":{duration_ms:.3f}')
        if proxy:
            one += ',"proxy":' + value_text(proxy)
        if message:
            one += ',"message":' + value_text(bounded(message))
        if name:
            one += ',"name":' + value_text(name)
        tries.append(one + "}")
    return "[" + ",".join(tries) + "]"


def tried(attempts: Sequence[Attempt]) -> str | None:
    """The accounts a request tried, as the `tried` column holds them: `,3,1,`."""
    return f",{','.join([str(a.account_id) for a in attempts])}," if attempts else None


def _row_values(row: RequestLog, instance: str | None) -> tuple[Any, ...]:
    # Unpacked at once, in `RequestLog`'s order (a request log row is written for every
    # request; reading its fields one by one cost more than the rest of this).
    (ts, request_id, route, status, key_id, account_id, model, stream, error_type, input_tokens,
     output_tokens, cache_read_tokens, cache_creation_tokens, cost_usd, priced, latency_ms,
     ttfb_ms, client, user_agent, attempts, error_message) = row
    return (ts, request_id, route, status, key_id, account_id, model, int(stream), error_type,
            input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, latency_ms,
            ttfb_ms, client, user_agent, _attempts_json(attempts), instance, cost_usd,
            int(priced), bounded(error_message), tried(attempts))


class _StoredValues(Sequence[tuple[Any, ...]]):
    """The rows' values as stored, each made when it is read: on the database's thread, and
    by an engine that inserts in steps (SQLite), a step at a time.

    Why: a full batch of the log writer takes about 1.5 ms to convert. On the event loop,
    every request in flight would wait for it; on the database's thread in one go, so would
    the loop on a machine with one CPU, until the thread's time slice ends
    (`SqliteSession.insert_rows` gives the CPU back between its statements).
    """

    def __init__(self, rows: Sequence[RequestLog], instance: str | None) -> None:
        self._rows = rows
        self._instance = instance

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...

    def __getitem__(self, index: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        if isinstance(index, slice):
            return [_row_values(row, self._instance) for row in self._rows[index]]
        return _row_values(self._rows[index], self._instance)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return (_row_values(row, self._instance) for row in self._rows)


def _stored_log(row: tuple[Any, ...]) -> StoredLog:
    (id_, ts, request_id, route, status, key_id, account_id, model, stream, error_type,
     input_tokens, output_tokens, cache_read, cache_creation, latency_ms, ttfb_ms, client,
     user_agent, attempts, instance, cost_usd, priced, error_message, _) = row
    return StoredLog(id_, RequestLog(
        ts=ts, request_id=request_id, route=route, status=status, key_id=key_id,
        account_id=account_id, model=model, stream=bool(stream), error_type=error_type,
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation, latency_ms=latency_ms, ttfb_ms=ttfb_ms,
        client=client, user_agent=user_agent, cost_usd=cost_usd,
        priced=bool(priced), error_message=error_message,
        attempts=tuple(Attempt(account_id=a["account_id"], status=a["status"],
                               error_type=a["error_type"], duration_ms=a["duration_ms"],
                               proxy=a.get("proxy"), message=a.get("message"),
                               account_name=a.get("name"))
                       for a in json.loads(attempts))), instance)


# --- cursors ------------------------------------------------------------------------------------
# The listing is ordered by (ts DESC, id DESC), so a cursor is the position of the last row shown.
# `repr` of a float round-trips exactly, so the next page starts right after that row even when
# many rows share a timestamp. Base64 keeps it opaque: clients must not build cursors themselves.


def encode_cursor(ts: float, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{ts!r}:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, int]:
    """The (ts, id) a cursor points after; `ValidationError` (field `cursor`) if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        ts_text, row_id_text = raw.split(":")
        ts, row_id = float(ts_text), int(row_id_text)
    except (ValueError, binascii.Error, UnicodeError):
        raise ValidationError("invalid cursor", field="cursor") from None
    if (not math.isfinite(ts) or not 0 <= row_id < 2**63
            or encode_cursor(ts, row_id) != cursor.rstrip("=")):
        raise ValidationError("invalid cursor", field="cursor")
    return ts, row_id


# --- stats arithmetic (pure) ----------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below it.

    Always one of the values (never interpolated), so a p95 latency is a latency some request
    really had. `None` for no values; p=0 gives the minimum.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    if not sorted_values:
        return None
    # round(): p * n / 100 is an integer in exact arithmetic more often than in floats
    # (95 * 20 / 100); without it a float a hair above 19 would pick the 20th value.
    rank = math.ceil(round(p * len(sorted_values) / 100, 9))
    return sorted_values[max(rank, 1) - 1]


def is_error(status: int, error_type: str | None) -> bool:
    """A request counts as an error when the client got an HTTP error status, or when it got a
    200 that went wrong later (a stream cut off midway records its `error_type`)."""
    return status >= 400 or error_type is not None


def error_kind(status: int, error_type: str | None) -> str:
    """What an error is counted as: its `error_type`, or `http_<status>` when it has none."""
    return error_type if error_type is not None else f"http_{status}"


def pool_failure(status: int, error_type: str | None) -> bool:
    """An error the pool is to blame for (5xx, Kestrel's own 429/503 with no account to serve,
    a stream that broke midway), as opposed to the client's own (a bad request, an unknown
    model, a key refused or over its limits, a client that went away). Only the first kind
    says the pool is unwell."""
    return (status >= 500 or error_type in POOL_REFUSALS
            or (status < 400 and error_type is not None))


@dataclass
class _Group:
    """Running totals for one slice of the rows (all, one account, one key, one model, a bucket)."""

    requests: int = 0
    errors: int = 0
    pool_errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    cost_usd: float = 0.0
    latencies: list[float] = field(default_factory=list)
    ttfbs: list[float] = field(default_factory=list)

    def add(self, status: int, error_type: str | None, tokens: Sequence[int],
            latency_ms: float, ttfb_ms: float | None, cost_usd: float) -> None:
        self.requests += 1
        self.cost_usd += cost_usd
        if is_error(status, error_type):
            self.errors += 1
            self.pool_errors += pool_failure(status, error_type)
            kind = error_kind(status, error_type)
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1
        for index, count in enumerate(tokens):
            self.tokens[index] += count
        self.latencies.append(latency_ms)
        if ttfb_ms is not None:
            self.ttfbs.append(ttfb_ms)

    def _tokens(self) -> dict[str, Any]:
        return {**dict(zip(TOKEN_KINDS, self.tokens, strict=True)),
                "cost_usd": round(self.cost_usd, 6)}

    def summary(self) -> dict[str, Any]:
        self.latencies.sort()
        self.ttfbs.sort()
        return {
            "requests": self.requests,
            **self._errors(),
            "errors_by_type": dict(sorted(self.errors_by_type.items())),
            **self._tokens(),
            "p50_latency_ms": percentile(self.latencies, 50),
            "p95_latency_ms": percentile(self.latencies, 95),
            "p50_ttfb_ms": percentile(self.ttfbs, 50),
            "p95_ttfb_ms": percentile(self.ttfbs, 95),
        }

    def _errors(self) -> dict[str, int]:
        return {"errors": self.errors, "pool_errors": self.pool_errors,
                "client_errors": self.errors - self.pool_errors}

    def bucket(self, start: float) -> dict[str, Any]:
        self.latencies.sort()
        self.ttfbs.sort()
        return {
            "start": start,
            "requests": self.requests,
            **self._errors(),
            **self._tokens(),
            "p50_latency_ms": percentile(self.latencies, 50),
            "p95_latency_ms": percentile(self.latencies, 95),
            "p50_ttfb_ms": percentile(self.ttfbs, 50),
            "p95_ttfb_ms": percentile(self.ttfbs, 95),
        }


@dataclass
class _Tries:
    """One account's upstream attempts: how many served, and how the others failed."""

    attempts: int = 0
    served: int = 0
    failures_by_type: dict[str, int] = field(default_factory=dict)
    last_failure_at: float | None = None

    def add(self, status: int | None, error_type: str | None, ts: float) -> None:
        self.attempts += 1
        if status is not None and status < 300 and error_type is None:
            self.served += 1
            return
        kind = error_type or f"http_{status}"
        self.failures_by_type[kind] = self.failures_by_type.get(kind, 0) + 1
        self.last_failure_at = ts if self.last_failure_at is None else max(self.last_failure_at,
                                                                           ts)

    def summary(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "served": self.served,
                "failed": self.attempts - self.served,
                "failures_by_type": dict(sorted(self.failures_by_type.items())),
                "last_failure_at": self.last_failure_at}


def _tries_of(account_id: int | None, status: int, error_type: str | None, attempts_json: str,
              tried_ids: str | None) -> Iterable[tuple[int, int | None, str | None]]:
    """(account, status, error type) of each attempt. Most requests are one attempt that served:
    `tried` says so without parsing the attempts' JSON."""
    if (tried_ids is not None and tried_ids.count(",") == 2 and account_id is not None
            and status < 300 and error_type is None):
        return ((account_id, status, None),)
    return ((a["account_id"], a["status"], a["error_type"]) for a in json.loads(attempts_json))


def _ranked(groups: dict[Any, _Group], name: str) -> list[dict[str, Any]]:
    """Busiest first; ties by id, with the rows that have none (null) last."""
    order = sorted(groups, key=lambda k: (-groups[k].requests, k is None, "" if k is None else k))
    return [{name: key, **groups[key].summary()} for key in order]


def _ranked_accounts(groups: dict[int | None, _Group], tries: dict[int, _Tries]
                     ) -> list[dict[str, Any]]:
    """Accounts by requests served, then by attempts: one that only failed is listed too."""
    for account_id in tries:
        groups.setdefault(account_id, _Group())
    order = sorted(groups, key=lambda k: (-groups[k].requests,
                                          -(tries[k].attempts if k in tries else 0),
                                          k is None, 0 if k is None else k))
    return [{"account_id": key, **groups[key].summary(),
             **(tries[key] if key in tries else _Tries()).summary()} for key in order]


def summarize(rows: Iterable[Sequence[Any]], *, since: float, until: float,
              bucket_seconds: int) -> dict[str, Any]:
    """Aggregate rows of (ts, account_id, key_id, model, status, error_type, input, output,
    cache_read, cache_creation, latency_ms, ttfb_ms, cost_usd, attempts, tried) that lie in
    [since, until). Accounts also count their attempts: served, and failed by kind.

    The series covers the whole window, empty buckets included, so a chart needs no gap logic:
    bucket i starts at `since + i * bucket_seconds`, the last one may end past `until`. An empty
    bucket counts zero everywhere and has null percentiles (there is no latency to report).
    """
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")
    if until <= since:
        raise ValueError("until must be after since")
    count = math.ceil((until - since) / bucket_seconds)
    if count > MAX_BUCKETS:
        raise ValueError(f"{count} buckets is more than {MAX_BUCKETS}")
    totals = _Group()
    accounts: dict[int | None, _Group] = {}
    keys: dict[int | None, _Group] = {}
    models: dict[str | None, _Group] = {}
    buckets = [_Group() for _ in range(count)]
    tries: dict[int, _Tries] = {}
    for (ts, account_id, key_id, model, status, error_type, *tokens, latency, ttfb,
         cost_usd, attempts_json, tried_ids) in rows:
        # min(): a ts a rounding error below `until` must not index past the last bucket.
        slot = buckets[min(int((ts - since) // bucket_seconds), count - 1)]
        for group in (totals, accounts.setdefault(account_id, _Group()),
                      keys.setdefault(key_id, _Group()), models.setdefault(model, _Group()),
                      slot):
            group.add(status, error_type, tokens, latency, ttfb, cost_usd)
        for tried_id, tried_status, tried_error in _tries_of(account_id, status, error_type,
                                                             attempts_json, tried_ids):
            tries.setdefault(tried_id, _Tries()).add(tried_status, tried_error, ts)
    return {
        "since": since,
        "until": until,
        "bucket_seconds": bucket_seconds,
        "totals": totals.summary(),
        "accounts": _ranked_accounts(accounts, tries),
        "keys": _ranked(keys, "key_id"),
        "models": _ranked(models, "model"),
        "series": [b.bucket(since + i * bucket_seconds) for i, b in enumerate(buckets)],
    }


# --- the store ------------------------------------------------------------------------------------


def _latest_per_id(pairs: Iterable[tuple[int | None, float]]
                   ) -> list[tuple[float, int, float]]:
    latest: dict[int, float] = {}
    for row_id, ts in pairs:
        if row_id is not None and ts > latest.get(row_id, -math.inf):
            latest[row_id] = ts
    return [(ts, row_id, ts) for row_id, ts in latest.items()]


class RequestLogStore:
    def __init__(self, db: Database, instance: str | None = None) -> None:
        """`instance`: the name this process's rows carry (INSTANCE_NAME)."""
        self._db = db
        self._instance = instance

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a failed write may succeed later with the same rows (see `Database`)."""
        return self._db.is_transient(exc)

    async def insert_many(self, rows: Sequence[RequestLog]) -> None:
        """Insert the rows and move `last_used_at` of their keys and accounts forward, in one
        transaction. A row already older than what is stored never moves it back."""
        if not rows:
            return
        instance = self._instance

        def run(conn: Session) -> None:
            key_times = _latest_per_id((row.key_id, row.ts) for row in rows)
            account_times = _latest_per_id((row.account_id, row.ts) for row in rows)
            conn.insert_rows("request_logs", _COLUMN_NAMES, _StoredValues(rows, instance))
            # A key or account deleted meanwhile simply matches no row.
            conn.executemany("UPDATE api_keys SET last_used_at = ? WHERE id = ? AND "
                             "(last_used_at IS NULL OR last_used_at < ?)", key_times)
            conn.executemany("UPDATE accounts SET last_used_at = ? WHERE id = ? AND "
                             "(last_used_at IS NULL OR last_used_at < ?)", account_times)
        await self._db.write(run)

    async def query(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        account_id: int | None = None,
        key_id: int | None = None,
        status: int | None = None,
        model: str | None = None,
        instance: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> tuple[list[StoredLog], str | None]:
        """One page, newest first (by ts, then id), and the cursor of the next page (None: last).

        Filters combine with AND; `account_id` matches every request that account served or
        tried, `model` any model name containing it; `since` is inclusive, `until` exclusive. A
        cursor is only meaningful with the filters it was issued for.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where: list[str] = []
        args: list[Any] = []
        for column, value in (("key_id", key_id), ("status", status), ("instance", instance)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if account_id is not None:
            # Rows older than schema 9 have no `tried`: they match the account that served them.
            where.append("(tried LIKE ? OR (tried IS NULL AND account_id = ?))")
            args.extend((f"%,{account_id},%", account_id))
        if model is not None:
            # LOWER on both sides: SQLite's LIKE ignores case, PostgreSQL's does not.
            where.append("LOWER(model) LIKE ? ESCAPE '!'")
            escaped = model.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
            args.append(f"%{escaped}%")
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts < ?")
            args.append(until)
        if cursor is not None:
            where.append("(ts, id) < (?, ?)")
            args.extend(decode_cursor(cursor))
        sql = (f"SELECT id, {_COLUMNS} FROM request_logs"
               f"{' WHERE ' + ' AND '.join(where) if where else ''}"
               f" ORDER BY ts DESC, id DESC LIMIT ?")
        args.append(limit + 1)  # one more than asked tells whether a next page exists

        def run(conn: Session) -> list[StoredLog]:
            return [_stored_log(row) for row in conn.execute(sql, args)]
        rows = await self._db.read(run)
        if len(rows) <= limit:
            return rows, None
        page = rows[:limit]
        return page, encode_cursor(page[-1].log.ts, page[-1].id)

    async def stats(self, *, since: float, until: float, bucket_seconds: int) -> dict[str, Any]:
        """Totals, per account / key / model, and a time series over [since, until).

        Each group: `requests`, `errors` (see `is_error`) and `errors_by_type` (see `error_kind`),
        the four token counts, and p50/p95 of `latency_ms` and `ttfb_ms` (nearest rank; null when
        there are no values — ttfb is null for requests that never got a first byte). Series
        buckets carry counts, tokens and latency percentiles; see `summarize`.

        Reads every row of the window once: fine for the windows the dashboard shows (days of a
        personal or team proxy); a far larger table would want pre-aggregated buckets.
        """
        def run(conn: Session) -> dict[str, Any]:
            rows = conn.execute(
                "SELECT ts, account_id, key_id, model, status, error_type, input_tokens, "
                "output_tokens, cache_read_tokens, cache_creation_tokens, latency_ms, ttfb_ms, "
                "cost_usd, attempts, tried FROM request_logs WHERE ts >= ? AND ts < ?",
                (since, until))
            return summarize(rows, since=since, until=until, bucket_seconds=bucket_seconds)
        return await self._db.read(run)

    async def prune(self, before: float) -> int:
        """Delete rows with ts < `before`, chunk by chunk; return how many went."""
        def run(conn: Session) -> int:
            return conn.execute(
                "DELETE FROM request_logs WHERE id IN "
                "(SELECT id FROM request_logs WHERE ts < ? LIMIT ?)", (before, PRUNE_CHUNK)
            ).rowcount

        deleted = 0
        while True:
            # One transaction per chunk: whatever waits in the writer queue runs in between.
            chunk = await self._db.write(run)
            deleted += chunk
            if chunk < PRUNE_CHUNK:
                return deleted
