"""Subscription usage windows from `anthropic-ratelimit-unified-*` response headers. Pure.

Anthropic answers requests made with a subscription's OAuth token with headers such as:

    anthropic-ratelimit-unified-status: allowed            (allowed, allowed_warning, rejected)
    anthropic-ratelimit-unified-reset: 1767225600          (epoch seconds)
    anthropic-ratelimit-unified-representative-claim: five_hour
    anthropic-ratelimit-unified-5h-status: allowed
    anthropic-ratelimit-unified-5h-utilization: 0.42       (fraction of the window; may pass 1)
    anthropic-ratelimit-unified-5h-reset: 1767225600
    anthropic-ratelimit-unified-7d-utilization: 0.13
    anthropic-ratelimit-unified-7d-reset: 1767744000

and the same `-status` / `-utilization` / `-reset` triple for other windows when the plan has
them (for example a per-model weekly window). Every window present is kept, under the name
between the prefix and the field. Values that do not parse are left out rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from kestrel.domain import UsageWindow, UsageWindows

PREFIX = "anthropic-ratelimit-unified-"
_FIELDS = ("status", "utilization", "reset")
# The two windows every subscription has come first; any others follow by name.
_FIRST = ("5h", "7d")


def parse_usage_windows(headers: Mapping[str, str], *, now: float) -> UsageWindows | None:
    """The usage windows an answer reported (`headers` with lower-case names), or None when it
    carried no unified header at all (API-key accounts, errors before the limiter)."""
    overall: dict[str, str] = {}
    windows: dict[str, dict[str, str]] = {}
    for name, value in headers.items():
        if not name.startswith(PREFIX):
            continue
        rest = name[len(PREFIX):]
        if rest in ("status", "reset", "representative-claim"):
            overall[rest] = value
            continue
        window, _, field = rest.rpartition("-")
        if window and field in _FIELDS:
            windows.setdefault(window, {})[field] = value
    if not overall and not windows:
        return None
    ordered = sorted(windows, key=lambda w: (_FIRST.index(w) if w in _FIRST else len(_FIRST), w))
    return UsageWindows(
        observed_at=now,
        status=_status(overall.get("status")),
        reset_at=_epoch(overall.get("reset")),
        representative_claim=_status(overall.get("representative-claim")),
        windows=tuple(UsageWindow(name=w, status=_status(windows[w].get("status")),
                                  utilization=_fraction(windows[w].get("utilization")),
                                  reset_at=_epoch(windows[w].get("reset")))
                      for w in ordered),
    )


def _status(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    # Statuses are short identifiers; anything else is not worth storing or showing.
    return text if text and len(text) <= 40 and text.replace("_", "").isalnum() else None


def _fraction(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _epoch(value: str | None) -> float | None:
    """Epoch seconds, as Anthropic sends the unified resets; RFC 3339 is accepted too."""
    if value is None or not value.strip():
        return None
    try:
        epoch = float(value)
    except ValueError:
        try:
            when = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        epoch = when.timestamp()
    return epoch if math.isfinite(epoch) and epoch >= 0 else None


def headroom(usage: UsageWindows | None, now: float) -> float | None:
    """How much of its tightest window an account has left, 0.0 to 1.0; None when unknown.

    A window whose reset has passed counts as fresh (the headers are from before the reset); a
    current overall `rejected` leaves nothing.
    """
    if usage is None:
        return None
    if usage.status == "rejected" and (usage.reset_at is None or usage.reset_at > now):
        return 0.0
    left = [1.0 - w.utilization for w in usage.windows
            if w.utilization is not None and (w.reset_at is None or w.reset_at > now)]
    return min(1.0, max(0.0, min(left, default=1.0)))
