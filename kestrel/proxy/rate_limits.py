"""API rate-limit headroom from `anthropic-ratelimit-*` response headers. Pure.

Anthropic answers requests made with an API key with, for each limit of the key's tier:

    anthropic-ratelimit-requests-limit: 50
    anthropic-ratelimit-requests-remaining: 49
    anthropic-ratelimit-requests-reset: 2026-12-04T12:00:30Z      (RFC 3339)

and the same triple for `tokens`, `input-tokens` and `output-tokens`. The subscription
headers (`anthropic-ratelimit-unified-*`) are another matter: kestrel/oauth/windows.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from kestrel.domain import Headroom, RateLimits

PREFIX = "anthropic-ratelimit-"
# In the order they are shown; the header's spelling, then the name answers use.
LIMITS = (("requests", "requests"), ("tokens", "tokens"), ("input-tokens", "input_tokens"),
          ("output-tokens", "output_tokens"))


def parse_rate_limits(headers: Mapping[str, str], *, now: float) -> RateLimits | None:
    """The headroom an answer reported (`headers` with lower-case names), or None when it
    carried none of these headers. Values that do not parse are left out, not guessed."""
    found = []
    for spelled, name in LIMITS:
        limit = _count(headers.get(f"{PREFIX}{spelled}-limit"))
        remaining = _count(headers.get(f"{PREFIX}{spelled}-remaining"))
        reset_at = _moment(headers.get(f"{PREFIX}{spelled}-reset"))
        if (limit, remaining, reset_at) != (None, None, None):
            found.append(Headroom(name, limit, remaining, reset_at))
    return RateLimits(observed_at=now, limits=tuple(found)) if found else None


def _count(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _moment(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None
