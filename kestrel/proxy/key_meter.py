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
from kestrel.proxy.key_limits import Periods, Standing, Tally, limited, over_limit, periods
from kestrel.store.usage import Changes, DayCounts, Totals, UsageStore, Window

log = logging.getLogger("kestrel.limits")

SYNC_SECONDS = 0.25
PRUNE_SECONDS = 60.0

_Period = tuple[str, int, object]  # ("minute" | "day" | "month", key_id, which one)


class _Counted:
    """Counts not yet in the shared totals: the rows to add, and per key and period the sums
    admission decides on."""

    def __init__(self) -> None:
        self.changes = Changes()
        self.per_key: dict[_Period, Tally] = {}

    def tally(self, period: _Period) -> Tally:
        found = self.per_key.get(period)
        if found is None:
            found = self.per_key[period] = Tally()
        return found

    def absorb(self, other: _Counted) -> None:
        self.changes.absorb(other.changes)
        for period, counts in other.per_key.items():
            self.tally(period).add(counts)


class Ticket:
    """One admitted request: closed exactly once, when it ends (its usage counted then)."""

    __slots__ = ("_meter", "_key_id", "_open")

    def __init__(self, meter: KeyMeter, key_id: int) -> None:
        self._meter = meter
        self._key_id = key_id
        self._open = True

    def close(self, row: RequestLog | None = None) -> None:
        """Count `row`'s usage (None: the request ended without one) and free its slot."""
        if self._open:
            self._open = False
            self._meter.finished(self._key_id, row)


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
        """A ticket for one more request of `key`, or raises `KeyOverLimit`."""
        now = self._clock()
        at = self.periods(now)
        if limited(key):
            refused = over_limit(key, self.standing(key.id, at), at, now)
            if refused is not None:
                raise refused
        self._pending.tally(("minute", key.id, at.minute)).requests += 1
        counts = self._pending.changes.minutes.get((key.id, at.minute))
        if counts is None:
            counts = self._pending.changes.minutes[(key.id, at.minute)] = [0, 0]
        counts[0] += 1
        self._in_flight[key.id] = self._in_flight.get(key.id, 0) + 1
        return Ticket(self, key.id)

    def standing(self, key_id: int, at: Periods) -> Standing:
        """What `key_id` used in the windows of `at`, as this process knows it."""
        window = self._shared_window
        shared = self._shared
        minute, day, month = Tally(), Tally(), Tally()
        if window is not None and window.minute == at.minute:
            requests, tokens = shared.minute.get(key_id, (0, 0))
            minute.requests, minute.tokens = requests, tokens
        if window is not None and window.day == at.day:
            day.tokens, day.cost_usd = shared.day.get(key_id, (0, 0.0))
        if window is not None and window.month_first[:7] == at.month:
            month.tokens, month.cost_usd = shared.month.get(key_id, (0, 0.0))
        for counted in (self._sending, self._pending):
            if counted is None:
                continue
            for total, period in ((minute, ("minute", key_id, at.minute)),
                                  (day, ("day", key_id, at.day)),
                                  (month, ("month", key_id, at.month))):
                if (local := counted.per_key.get(period)) is not None:
                    total.add(local)
        in_flight = (self._in_flight.get(key_id, 0)
                     + shared.in_flight_elsewhere.get(key_id, 0))
        return Standing(minute=minute, day=day, month=month, in_flight=in_flight)

    def finished(self, key_id: int, row: RequestLog | None) -> None:
        """A request of `key_id` ended: free its slot and count what it used."""
        self._in_flight[key_id] = self._in_flight.get(key_id, 1) - 1
        if row is None:
            return
        at = self.periods(self._clock())
        counts = DayCounts(requests=1, input_tokens=row.input_tokens,
                           output_tokens=row.output_tokens,
                           cache_read_tokens=row.cache_read_tokens,
                           cache_creation_tokens=row.cache_creation_tokens,
                           cost_usd=row.cost_usd, unpriced=0 if row.priced else 1)
        pending = self._pending
        day_key = (at.day, key_id, row.account_id or 0, row.model or "")
        existing = pending.changes.days.get(day_key)
        if existing is None:
            pending.changes.days[day_key] = counts
        else:
            existing.add(counts)
        tokens = counts.tokens
        if tokens:
            minute = pending.changes.minutes.get((key_id, at.minute))
            if minute is None:
                minute = pending.changes.minutes[(key_id, at.minute)] = [0, 0]
            minute[1] += tokens
            pending.tally(("minute", key_id, at.minute)).tokens += tokens
        for period in (("day", key_id, at.day), ("month", key_id, at.month)):
            tally = pending.tally(period)
            tally.tokens += tokens
            tally.cost_usd += row.cost_usd

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
        try:
            totals = await self._store.sync(sending.changes, in_flight, holder=self._holder,
                                            window=window, now=now)
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
        self._published = {key_id: count for key_id, count in in_flight.items() if count}
        self._in_flight = {key_id: count for key_id, count in self._in_flight.items() if count}
