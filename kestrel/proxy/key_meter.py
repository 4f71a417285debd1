"""Counts what each client key uses and admits its requests against its limits, with the counts
of every process on the database.

The hot path never waits for the database. Each process counts in memory and, every
`sync_seconds` (0.25 s), adds its new counts to the shared ones and reads everyone's totals
back in one transaction (kestrel/store/usage.py). A request is admitted against those totals
plus what this process counted since. So what another process admitted reaches this one within
one sync, and with N processes a limit can be exceeded by what the other N−1 admit in that
time:

- `rpm`, `tpm`, `max_concurrency`: by at most what the other processes admit in one sync
  interval (in a burst that reaches every process in the same quarter second, up to N times
  the limit; one process alone never exceeds them);
- budgets and `daily_tokens` count what requests really used, known when each ends: a request
  that starts under budget may end above it, by its own cost; and each other process may start
  requests for one more sync interval before it learns that the budget is spent.

Counts persist in the database (per day, per minute), so a restart forgets nothing but the
last quarter second of a process that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, tzinfo

from kestrel.domain import ApiKey, RequestLog
from kestrel.proxy.key_limits import Periods, Standing, Tally, over_limit, periods
from kestrel.store.usage import Changes, DayCounts, Totals, UsageStore, Window

log = logging.getLogger("kestrel.limits")

SYNC_SECONDS = 0.25
PRUNE_SECONDS = 60.0

# (key_id, "day" | "month", which one) → [tokens, dollars] not yet in the shared totals.
_Spent = dict[tuple[int, str, str], list[float]]


class _Counted:
    """Counts not yet in the shared totals: the rows to add, and for limited keys the day's and
    month's sums admission decides on (their minutes are `changes.minutes` itself)."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.spent: _Spent = {}

    def absorb(self, other: _Counted) -> None:
        self.changes.absorb(other.changes)
        for period, (tokens, cost) in other.spent.items():
            mine = self.spent.setdefault(period, [0, 0.0])
            mine[0] += tokens
            mine[1] += cost


class Ticket:
    """One admitted request: closed exactly once, when it ends (its usage counted then)."""

    __slots__ = ("_meter", "_key", "_open")

    def __init__(self, meter: KeyMeter, key: ApiKey) -> None:
        self._meter = meter
        self._key = key
        self._open = True

    def close(self, row: RequestLog | None = None) -> None:
        """Count `row`'s usage (None: the request ended without one) and free its slot."""
        if self._open:
            self._open = False
            self._meter.finished(self._key, row)


class KeyMeter:
    def __init__(self, store: UsageStore, *, holder: str, zone: tzinfo = UTC,
                 clock: Callable[[], float] = time.time,
                 sync_seconds: float = SYNC_SECONDS) -> None:
        self._store = store
        self._holder = holder
        self._zone = zone
        self._clock = clock
        self._sync_seconds = sync_seconds
        self._pending = _Counted()
        self._sending: _Counted | None = None
        self._shared = Totals()
        self._shared_window: Window | None = None
        # The month's days before the shared window's day, everyone's, and the window they were
        # read at (always the window of the last sync that read them; see `sync`).
        self._month_before_today: dict[int, tuple[int, float]] = {}
        self._month_read: Window | None = None
        # Requests in flight per limited key, here; and as last written for the others.
        self._in_flight: dict[int, int] = {}
        self._published: dict[int, int] = {}
        self._periods: Periods | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def periods(self, now: float) -> Periods:
        """The windows `now` falls in; recomputed once a minute (day and month boundaries are
        whole minutes in every time zone)."""
        current = self._periods
        if current is None or not current.minute <= now < current.next_minute:
            current = self._periods = periods(now, self._zone)
        return current

    def admit(self, key: ApiKey) -> Ticket:
        """A ticket for one more request of `key`, or raises `KeyOverLimit`. A key without
        limits is only counted when its request ends (for its spend and /admin/usage)."""
        if key.limited:
            now = self._clock()
            at = self.periods(now)
            refused = over_limit(key, self.standing(key.id, at), at, now)
            if refused is not None:
                raise refused
            minutes = self._pending.changes.minutes
            counts = minutes.get((key.id, at.minute))
            if counts is None:
                minutes[(key.id, at.minute)] = [1, 0]
            else:
                counts[0] += 1
            self._in_flight[key.id] = self._in_flight.get(key.id, 0) + 1
        return Ticket(self, key)

    def standing(self, key_id: int, at: Periods) -> Standing:
        """What `key_id` used in the windows of `at`, as this process knows it."""
        window = self._shared_window
        shared = self._shared
        minute, day, month = Tally(), Tally(), Tally()
        if window is not None and window.minute == at.minute:
            minute.requests, minute.tokens = shared.minute.get(key_id, (0, 0))
        if window is not None and window.day == at.day:
            day.tokens, day.cost_usd = shared.day.get(key_id, (0, 0.0))
        if window is not None and window.month_first[:7] == at.month:
            # The days before the window's, and its own (still yesterday's, just past midnight).
            (earlier_tokens, earlier_cost), (last_tokens, last_cost) = (
                self._month_before_today.get(key_id, (0, 0.0)),
                shared.day.get(key_id, (0, 0.0)))
            month.tokens, month.cost_usd = earlier_tokens + last_tokens, earlier_cost + last_cost
        for counted in (self._sending, self._pending):
            if counted is None:
                continue
            if (counts := counted.changes.minutes.get((key_id, at.minute))) is not None:
                minute.requests += counts[0]
                minute.tokens += counts[1]
            for total, period in ((day, (key_id, "day", at.day)),
                                  (month, (key_id, "month", at.month))):
                if (spent := counted.spent.get(period)) is not None:
                    total.tokens += int(spent[0])
                    total.cost_usd += spent[1]
        in_flight = (self._in_flight.get(key_id, 0)
                     + shared.in_flight_elsewhere.get(key_id, 0))
        return Standing(minute=minute, day=day, month=month, in_flight=in_flight)

    def finished(self, key: ApiKey, row: RequestLog | None) -> None:
        """A request of `key` ended: free its slot and count what it used."""
        if key.limited:
            self._in_flight[key.id] = self._in_flight.get(key.id, 1) - 1
        if row is None:
            return
        at = self.periods(self._clock())
        pending = self._pending
        days = pending.changes.days
        day_key = (at.day, key.id, row.account_id or 0, row.model or "")
        counts = days.get(day_key)
        if counts is None:
            counts = days[day_key] = DayCounts()
        counts.requests += 1
        counts.input_tokens += row.input_tokens
        counts.output_tokens += row.output_tokens
        counts.cache_read_tokens += row.cache_read_tokens
        counts.cache_creation_tokens += row.cache_creation_tokens
        counts.cost_usd += row.cost_usd
        if not row.priced:
            counts.unpriced += 1
        if not key.limited:
            return
        tokens = row.input_tokens + row.cache_creation_tokens + row.output_tokens
        minute = pending.changes.minutes.setdefault((key.id, at.minute), [0, 0])
        minute[1] += tokens
        for period in ((key.id, "day", at.day), (key.id, "month", at.month)):
            spent = pending.spent.setdefault(period, [0, 0.0])
            spent[0] += tokens
            spent[1] += row.cost_usd

    # --- sharing with the other processes ---------------------------------------------------

    async def start(self) -> None:
        await self.sync()
        self._task = asyncio.create_task(self._run(), name="kestrel-key-meter")

    async def close(self) -> None:
        """Stop syncing, and write what is left (call once no request runs any more)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sync()

    async def _run(self) -> None:
        next_prune = self._clock() + PRUNE_SECONDS
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self.sync()
            if self._clock() >= next_prune:
                next_prune = self._clock() + PRUNE_SECONDS
                with contextlib.suppress(Exception):
                    await self._store.prune(now=self._clock())

    async def sync(self) -> None:
        """Add this process's new counts to the shared ones and read everyone's back. Never
        raises: while the database is away the counts wait, and admission goes on with what
        was last read."""
        now = self._clock()
        at = self.periods(now)
        window = Window.of(at.minute, at.day, at.month)
        sending, self._pending = self._pending, _Counted()
        self._sending = sending
        in_flight = {key_id: count for key_id, count in self._in_flight.items()
                     if count or self._published.get(key_id)}
        # The earlier days of the month are read again each minute (late counts of a process
        # that synced after midnight land in yesterday), not at every sync.
        month = self._month_read is None or self._month_read.minute != window.minute
        try:
            totals = await self._store.sync(sending.changes, in_flight, holder=self._holder,
                                            window=window, now=now, month=month)
        except Exception as exc:
            sending.absorb(self._pending)
            self._pending = sending
            if not self._failing:
                self._failing = True
                log.warning("could not share usage counts with the other processes (%s); "
                            "limits go on with the last counts read", type(exc).__name__)
            return
        finally:
            self._sending = None
        if self._failing:
            self._failing = False
            log.info("usage counts are shared again")
        self._shared, self._shared_window = totals, window
        if totals.month_before_today is not None:
            self._month_before_today, self._month_read = totals.month_before_today, window
        self._published = {key_id: count for key_id, count in in_flight.items() if count}
        self._in_flight = {key_id: count for key_id, count in self._in_flight.items() if count}
