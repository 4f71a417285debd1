"""How much a client key may use, decided from counts the meter keeps. Pure: the clock and the
counts are passed in.

Windows are fixed: a calendar minute for `rpm` and `tpm`, a calendar day and month in the
configured time zone for the daily and monthly limits. A fixed window resets at a moment the
client can be told, which is what `retry-after` and the message need.

Tokens, for `tpm` and `daily_tokens`, are input (uncached and cache writes) plus output. Cache
reads are left out, as Anthropic's own input rate limits leave them out: a coding session
re-reads its whole cached context on every turn. Dollars count everything at its price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from kestrel.domain import ApiKey, KeyOverLimit

# An in-flight request ends at a moment nobody can tell; a second is a fair first wait.
CONCURRENCY_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class Periods:
    """The windows a moment falls in, as epoch seconds, and the day and month as labels."""

    minute: float
    day: str  # YYYY-MM-DD in the time zone
    month: str  # YYYY-MM
    next_minute: float
    next_day: float
    next_month: float
    zone: tzinfo

    @property
    def zone_name(self) -> str:
        return zone_name(self.zone)


def zone_name(zone: tzinfo) -> str:
    """`Europe/Paris`, or `UTC`: the name TIME_ZONE gave."""
    return getattr(zone, "key", None) or str(zone)


def periods(now: float, zone: tzinfo) -> Periods:
    minute = math.floor(now / 60) * 60
    local = datetime.fromtimestamp(now, zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Through the date, not `+ 24 h`: a day with a clock change is 23 or 25 hours long.
    tomorrow = _midnight(midnight.date() + timedelta(days=1), zone)
    first = midnight.date().replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return Periods(minute=minute, day=midnight.strftime("%Y-%m-%d"),
                   month=midnight.strftime("%Y-%m"), next_minute=minute + 60,
                   next_day=tomorrow, next_month=_midnight(next_first, zone), zone=zone)


def _midnight(day: date, zone: tzinfo) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


@dataclass
class Tally:
    """What a key used in one window."""

    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd


@dataclass(frozen=True)
class Standing:
    """A key's use as far as this process knows: its own, and the others' as of the last sync."""

    minute: Tally
    day: Tally
    month: Tally
    in_flight: int


def over_limit(key: ApiKey, standing: Standing, at: Periods, now: float) -> KeyOverLimit | None:
    """Why `key` may not start one more request now, or None. Budgets are checked against what
    was spent: a request that starts under budget may end above it; the next one is refused."""
    if key.max_concurrency is not None and standing.in_flight >= key.max_concurrency:
        return KeyOverLimit(
            f"this API key already has {standing.in_flight} requests in flight, its limit "
            f"(max_concurrency {key.max_concurrency}); retry when one finishes",
            reason="max_concurrency", retry_after=CONCURRENCY_RETRY_SECONDS)
    minute_left = at.next_minute - now
    if key.rpm is not None and standing.minute.requests >= key.rpm:
        return KeyOverLimit(
            f"this API key reached its limit of {key.rpm:,} requests per minute (rpm); "
            f"it resets in {_seconds(minute_left)}", reason="rpm", retry_after=minute_left)
    if key.tpm is not None and standing.minute.tokens >= key.tpm:
        return KeyOverLimit(
            f"this API key used {standing.minute.tokens:,} tokens this minute, its limit is "
            f"{key.tpm:,} tokens per minute (tpm); it resets in {_seconds(minute_left)}",
            reason="tpm", retry_after=minute_left)
    if key.daily_tokens is not None and standing.day.tokens >= key.daily_tokens:
        return KeyOverLimit(
            f"this API key used {standing.day.tokens:,} tokens today, its daily limit is "
            f"{key.daily_tokens:,} (daily_tokens); it resets {_at(at.next_day, at, now)}",
            reason="daily_tokens", retry_after=at.next_day - now, final=True)
    for spent, budget, name, (span, adjective), reset in (
            (standing.day.cost_usd, key.daily_budget_usd, "daily_budget_usd",
             ("today", "daily"), at.next_day),
            (standing.month.cost_usd, key.monthly_budget_usd, "monthly_budget_usd",
             ("this month", "monthly"), at.next_month)):
        if budget is not None and spent >= budget:
            return KeyOverLimit(
                f"this API key spent {_usd(spent)} {span}, its {adjective} budget is "
                f"{_usd(budget)} ({name}); it resets {_at(reset, at, now)}",
                reason=name, retry_after=reset - now, final=True)
    return None


def _usd(amount: float) -> str:
    """Cents for a dollar or more; below, four decimals, so a small budget reads as spent."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _seconds(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))} s"


def _at(moment: float, at: Periods, now: float) -> str:
    """`at 2026-12-05 00:00 UTC (in 3 h 12 min)`: the person reads when, and how long."""
    when = datetime.fromtimestamp(moment, at.zone).strftime("%Y-%m-%d %H:%M")
    minutes = max(1, math.ceil((moment - now) / 60))
    wait = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min" \
        if minutes < 48 * 60 else f"{minutes // (24 * 60)} days"
    return f"at {when} {at.zone_name} (in {wait})"
