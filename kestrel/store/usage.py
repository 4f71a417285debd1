"""Usage counters shared by every process: per day (what /admin/usage reports and budgets are
held to), per key and minute (rpm, tpm), and requests in flight per key and process.

Each process adds what it counted since its last sync and reads back everyone's totals in one
transaction (`sync`), a few times a second; see kestrel/proxy/key_meter.py for why the counts
may lag by one sync and what that allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kestrel.store.database import Database
from kestrel.store.session import Session

# A holder (process) whose in-flight row was not rewritten for this long has stopped.
IN_FLIGHT_STALE_SECONDS = 5.0
# Minute rows are read for the current minute only; an hour of them is kept to look at.
MINUTES_KEPT_SECONDS = 3_600.0

DAY_COUNTS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens",
              "cache_creation_tokens", "cost_usd", "unpriced")
GROUPS = {"key": "key_id", "account": "account_id", "model": "model"}


@dataclass(slots=True)
class DayCounts:
    """Increments of one usage_days row (day, key, account, model)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    def add(self, other: DayCounts) -> None:
        for name in DAY_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


DayKey = tuple[str, int, int, str]  # day, key_id, account_id, model
MinuteKey = tuple[int, float]  # key_id, minute


@dataclass
class Changes:
    """What one process counted since its last sync."""

    days: dict[DayKey, DayCounts] = field(default_factory=dict)
    minutes: dict[MinuteKey, list[int]] = field(default_factory=dict)  # [requests, tokens]

    def __bool__(self) -> bool:
        return bool(self.days or self.minutes)

    def absorb(self, other: Changes) -> None:
        """Take `other`'s counts too (a sync that failed gives its changes back)."""
        for day_key, counts in other.days.items():
            self.days.setdefault(day_key, DayCounts()).add(counts)
        for minute_key, (requests, tokens) in other.minutes.items():
            mine = self.minutes.setdefault(minute_key, [0, 0])
            mine[0] += requests
            mine[1] += tokens


@dataclass(frozen=True)
class Window:
    """Which rows a sync reads back: the current minute and day, and the month's days before
    it (YYYY-MM-DD compare as text)."""

    minute: float
    day: str
    month_first: str

    @classmethod
    def of(cls, minute: float, day: str, month: str) -> Window:
        """`day` is YYYY-MM-DD, `month` YYYY-MM."""
        return cls(minute=minute, day=day, month_first=f"{month}-01")


@dataclass(frozen=True)
class KeySpend:
    """What a key used today and this month, as its limits count it."""

    tokens_today: int = 0
    today_usd: float = 0.0
    month_usd: float = 0.0


@dataclass
class Totals:
    """Everyone's counts per key, as one sync read them."""

    minute: dict[int, tuple[int, int]] = field(default_factory=dict)  # requests, tokens
    day: dict[int, tuple[int, float]] = field(default_factory=dict)  # tokens, cost
    # The month's days before today (None: not read this time). They no longer change, so a
    # sync reads them once a minute, not four times a second: a month of a large deployment
    # is tens of thousands of rows to sum.
    month_before_today: dict[int, tuple[int, float]] | None = None
    in_flight_elsewhere: dict[int, int] = field(default_factory=dict)


_UPSERT_DAY = (
    f"INSERT INTO usage_days (day, key_id, account_id, model, {', '.join(DAY_COUNTS)}) "
    f"VALUES (?, ?, ?, ?, {', '.join('?' * len(DAY_COUNTS))}) "
    "ON CONFLICT (day, key_id, account_id, model) DO UPDATE SET "
    + ", ".join(f"{c} = usage_days.{c} + excluded.{c}" for c in DAY_COUNTS))
_UPSERT_MINUTE = (
    "INSERT INTO key_minutes (key_id, minute, requests, tokens) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key_id, minute) DO UPDATE SET requests = key_minutes.requests + "
    "excluded.requests, tokens = key_minutes.tokens + excluded.tokens")
_UPSERT_IN_FLIGHT = (
    "INSERT INTO key_in_flight (key_id, holder, requests, seen_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key_id, holder) DO UPDATE SET requests = excluded.requests, "
    "seen_at = excluded.seen_at")
# Tokens as limits count them: input (uncached and cache writes) and output, not cache reads.
_TOKENS = "SUM(input_tokens + cache_creation_tokens + output_tokens)"


class UsageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(self, changes: Changes, in_flight: Mapping[int, int], *, holder: str,
                   window: Window, now: float, month: bool) -> Totals:
        """Add `changes`, publish this holder's requests in flight per key (0 deletes the row),
        and read everyone's totals for `window` (the month's earlier days too when `month`),
        in one transaction; with nothing to write, only the read."""
        def run(conn: Session) -> Totals:
            if changes.days:
                conn.executemany(_UPSERT_DAY, [(*day_key, *(getattr(c, n) for n in DAY_COUNTS))
                                               for day_key, c in changes.days.items()])
            if changes.minutes:
                conn.executemany(_UPSERT_MINUTE, [(*minute_key, *counts) for minute_key, counts
                                                  in changes.minutes.items()])
            busy = [(key_id, holder, count, now) for key_id, count in in_flight.items() if count]
            if busy:
                conn.executemany(_UPSERT_IN_FLIGHT, busy)
            idle = [(key_id, holder) for key_id, count in in_flight.items() if not count]
            if idle:
                conn.executemany("DELETE FROM key_in_flight WHERE key_id = ? AND holder = ?",
                                 idle)
            return _totals(conn, holder, window, now, month=month)
        if changes or in_flight:
            return await self._db.write(run)
        return await self._db.read(lambda conn: _totals(conn, holder, window, now, month=month))

    async def prune(self, *, now: float) -> None:
        """Forget minutes long past and the in-flight rows of processes that stopped."""
        def run(conn: Session) -> None:
            conn.execute("DELETE FROM key_minutes WHERE minute < ?", (now - MINUTES_KEPT_SECONDS,))
            conn.execute("DELETE FROM key_in_flight WHERE seen_at < ?",
                         (now - IN_FLIGHT_STALE_SECONDS,))
        await self._db.write(run)

    async def report(self, *, group_by: str, first_day: str, last_day: str,
                     by_month: bool) -> list[dict[str, Any]]:
        """Requests, tokens and cost per group (`key`, `account` or `model`) and period (each
        day, or each month when `by_month`) from `first_day` to `last_day` (inclusive)."""
        column = GROUPS[group_by]
        period = "substr(day, 1, 7)" if by_month else "day"
        sums = ", ".join(f"SUM({c})" for c in DAY_COUNTS)

        def run(conn: Session) -> list[dict[str, Any]]:
            rows = conn.execute(
                f"SELECT {period}, {column}, {sums} FROM usage_days "
                f"WHERE day >= ? AND day <= ? GROUP BY {period}, {column} "
                f"ORDER BY {period}, {column}", (first_day, last_day))
            return [_report_row(group_by, row) for row in rows]
        return await self._db.read(run)

    async def spend(self, window: Window) -> dict[int, KeySpend]:
        """Every key's use today and this month (for the admin's key list)."""
        totals = await self._db.read(lambda conn: _totals(conn, "", window, 0.0, month=True))
        earlier = totals.month_before_today or {}
        spend = {}
        for key_id in totals.day.keys() | earlier.keys():
            tokens, today = totals.day.get(key_id, (0, 0.0))
            spend[key_id] = KeySpend(tokens_today=tokens, today_usd=today,
                                     month_usd=today + earlier.get(key_id, (0, 0.0))[1])
        return spend


def _report_row(group_by: str, row: Iterable[Any]) -> dict[str, Any]:
    period, group, *counts = row
    values = dict(zip(DAY_COUNTS, counts, strict=True))
    none = "" if group_by == "model" else 0  # how usage_days stores "none"
    return {"period": period, group_by: None if group == none else group,
            **{name: int(value) for name, value in values.items() if name != "cost_usd"},
            "cost_usd": float(values["cost_usd"])}


def _totals(conn: Session, holder: str, window: Window, now: float, *, month: bool) -> Totals:
    totals = Totals()
    for key_id, requests, tokens in conn.execute(
            "SELECT key_id, requests, tokens FROM key_minutes WHERE minute = ?",
            (window.minute,)):
        totals.minute[key_id] = (int(requests), int(tokens))
    for key_id, tokens, cost in conn.execute(
            f"SELECT key_id, {_TOKENS}, SUM(cost_usd) FROM usage_days WHERE day = ? "
            "GROUP BY key_id", (window.day,)):
        totals.day[key_id] = (int(tokens), float(cost))
    if month:
        totals.month_before_today = {
            key_id: (int(tokens), float(cost)) for key_id, tokens, cost in conn.execute(
                f"SELECT key_id, {_TOKENS}, SUM(cost_usd) FROM usage_days WHERE day >= ? AND "
                "day < ? GROUP BY key_id", (window.month_first, window.day))}
    if holder:
        for key_id, requests in conn.execute(
                "SELECT key_id, SUM(requests) FROM key_in_flight WHERE holder <> ? AND "
                "seen_at >= ? GROUP BY key_id", (holder, now - IN_FLIGHT_STALE_SECONDS)):
            totals.in_flight_elsewhere[key_id] = int(requests)
    return totals
