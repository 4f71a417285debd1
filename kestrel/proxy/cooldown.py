"""What an upstream outcome means for the request and for the account that served it. Pure.

| upstream outcome                                 | account                      | request      |
|--------------------------------------------------|------------------------------|--------------|
| 2xx                                              | failures reset, cooldown off | served       |
| 429                                              | cooldown: headers or backoff | next account |
| 5xx (529 overloaded, 500, 502, 503, 504, ...)    | short backoff                | next account |
| connect error, timeout before first byte, junk   | short backoff                | next account |
| 401                                              | `invalid`                    | next account |
| 403                                              | cooldown 30 min              | next account |
| 402; 400 "credit balance is too low"; 400        | `exhausted`, cooldown        | next account |
|   "reached your specified API usage limits"; 429 |   `cooldown_max`             |              |
|   with error_code enforced_spend_limit_reached   |                              |              |
| any other 4xx (and 1xx / 3xx)                    | untouched: client's error    | returned     |
| `event: error` in a started stream               | short backoff (overloaded,   | forwarded,   |
|                                                  |   api, timeout errors)       | stream ends  |

Backoff: `base * 2**failures * (1 + JITTER_SPREAD * jitter)`, where `failures` counts the
account's consecutive failures before this one and `jitter` in [0, 1) comes from the caller (so
tests pin it). Short backoff starts at 1 s and is capped at 60 s; a 429 without usable headers
starts at 1 s and is capped at `cooldown_max`.

The 429 cooldown takes the latest of:
- `retry-after` (delta seconds or HTTP date) and `retry-after-ms` (what the official SDKs read);
- `anthropic-ratelimit-<window>-reset` (RFC 3339) for every window that is limiting, and
- `anthropic-ratelimit-unified[-<window>]-reset` (epoch seconds) likewise.
A window counts as limiting unless its headers say it is not: a `-remaining` above 0, a
`-status` of `allowed` / `allowed_warning`, or (without a status) a `-utilization` below 1 (the
unified windows report status and utilization, not a remaining count). A window with only a
reset header counts as limiting. So a subscription's `rejected` 429 cools the account until the
rejected window resets (the 5-hour one, say), not until the weekly window that is merely in use.
Both reset formats are accepted for both families, since the unified ones have been seen in
either.
A deadline already in the past is no deadline: then the backoff applies. Whatever the source,
the cooldown never exceeds `cooldown_max`, so a stale or skewed window cannot park an account
for days.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from kestrel.domain import AccountState

DEFAULT_COOLDOWN_MAX = 3600.0
"""An hour: longer than any per-minute window; a 5-hour or weekly window is re-probed hourly."""

SHORT_BACKOFF_BASE = 1.0
SHORT_BACKOFF_CAP = 60.0
"""Overload and transport trouble pass in seconds; a minute keeps a sick account out of the way
without losing it for long."""

RATE_LIMIT_BACKOFF_BASE = 1.0

FORBIDDEN_COOLDOWN = 30 * 60.0
"""A 403 is usually a permission or policy change on the account: retry it rarely, not never."""

JITTER_SPREAD = 0.25
"""Jitter stretches a backoff by up to 25%, so accounts that failed together recover apart."""

MAX_LAST_ERROR = 300

_MAX_EXPONENT = 30  # 2**30 s is decades: any cap is hit long before, and floats stay finite

_RATELIMIT_PREFIX = "anthropic-ratelimit-"

# Phrases of the 400s that mean "this account cannot pay", not "this request is wrong".
_EXHAUSTED_PHRASES = (
    "credit balance is too low",
    "reached your specified api usage limits",
    "reached your specified workspace api usage limits",
)
_SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached"})

# Credential-looking tokens never reach last_error, whatever an upstream echoes back.
_SECRET_RE = re.compile(r"(sk-ant-[A-Za-z0-9_-]*|(?i:bearer)\s+\S+|kst_[A-Za-z0-9_-]+)")


class Verdict(enum.Enum):
    SERVED = "served"
    RETRY_NEXT = "retry_next"
    RETURN_TO_CLIENT = "return_to_client"


@dataclass(frozen=True)
class AccountUpdate:
    state: AccountState
    cooldown_until: float | None
    consecutive_failures: int
    last_error: str | None


# What a served request says of its account: healthy, no cooldown, no failures, no error.
HEALTHY = AccountUpdate(AccountState.OK, None, 0, None)


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    update: AccountUpdate | None
    """None leaves the account untouched."""


# --- public API ---------------------------------------------------------------------------------


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    now: float,
    failures: int,
    jitter: float,
    cooldown_max: float = DEFAULT_COOLDOWN_MAX,
) -> Outcome:
    """Classify an upstream answer by its status, headers (lower-case names) and error body.

    `failures` is the account's consecutive_failures before this attempt; `body` is the (small)
    error body when status >= 400, used to spot billing 400s and to build `last_error`.
    """
    failed = failures + 1
    if 200 <= status < 300:
        return Outcome(Verdict.SERVED, HEALTHY)

    error_type, message, error_code = _parse_error_body(body)
    last_error = _last_error(str(status), error_type, message)

    if status == 401:
        return _next(AccountState.INVALID, None, failed, last_error)
    if (
        status == 402
        or (status == 400 and _says_exhausted(message))
        or (status == 429 and error_code in _SPEND_LIMIT_CODES)
    ):
        return _next(AccountState.EXHAUSTED, now + cooldown_max, failed, last_error)
    if status == 403:
        forbidden_until = now + min(FORBIDDEN_COOLDOWN, cooldown_max)
        return _next(AccountState.OK, forbidden_until, failed, last_error)
    if status == 429:
        until = rate_limit_deadline(headers, now)
        if until is None:
            until = now + backoff(RATE_LIMIT_BACKOFF_BASE, failures, jitter, cooldown_max)
        return _next(AccountState.OK, min(until, now + cooldown_max), failed, last_error)
    if status >= 500:
        return _next(AccountState.OK, now + short_backoff(failures, jitter), failed, last_error)
    # Any other 4xx is about the request, and 1xx / 3xx are not ours to judge: pass it on.
    return Outcome(Verdict.RETURN_TO_CLIENT, None)


def classify_transport_error(kind: str, *, now: float, failures: int, jitter: float) -> Outcome:
    """No usable answer: "connect", "timeout" (before the first byte) or "protocol" (a reset or
    bytes that are not HTTP). Any other kind is treated the same way."""
    label = {
        "connect": "connect error",
        "timeout": "timeout before the first byte",
        "protocol": "protocol error",
        "proxy_unreachable": "its proxy cannot be reached",
        "proxy_refused": "its proxy refused the connection",
        "proxy_auth": "its proxy refused the login",
    }.get(kind, f"transport error ({_clean(kind)[:40]})")
    return _next(AccountState.OK, now + short_backoff(failures, jitter), failures + 1, label)


def classify_stream_error(
    error_type: str,
    *,
    now: float,
    failures: int,
    jitter: float,
    message: str | None = None,
    cooldown_max: float = DEFAULT_COOLDOWN_MAX,
) -> AccountUpdate | None:
    """An `event: error` inside a stream already forwarded: the request cannot move any more,
    but the account learns from it. None leaves the account untouched (a request-side error)."""
    last_error = _last_error("stream", error_type, message)
    if error_type in ("overloaded_error", "api_error", "timeout_error"):
        until = now + short_backoff(failures, jitter)
    elif error_type == "rate_limit_error":
        until = now + backoff(RATE_LIMIT_BACKOFF_BASE, failures, jitter, cooldown_max)
    else:
        return None
    return AccountUpdate(AccountState.OK, until, failures + 1, last_error)


def parse_retry_after(value: str, now: float) -> float | None:
    """`Retry-After` as an absolute epoch: delta seconds (fractions tolerated) or an HTTP date.

    None for anything unreadable, negative or not finite.
    """
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return now + seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT, even when it does not say so
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_reset(value: str) -> float | None:
    """A rate-limit reset as an epoch: epoch seconds (the unified family) or RFC 3339."""
    text = value.strip()
    if not text:
        return None
    try:
        epoch = float(text)
    except ValueError:
        pass
    else:
        return epoch if math.isfinite(epoch) and epoch >= 0 else None
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def rate_limit_deadline(headers: Mapping[str, str], now: float) -> float | None:
    """The latest future moment the 429 headers point at (see the module docstring), or None."""
    candidates: list[float] = []
    value = headers.get("retry-after")
    when = parse_retry_after(value, now) if value is not None else None
    if when is not None:
        candidates.append(when)
    if (value := headers.get("retry-after-ms")) is not None:
        try:
            millis = float(value)
        except ValueError:
            millis = math.nan
        if math.isfinite(millis) and millis >= 0:
            candidates.append(now + millis / 1000)
    for name, value in headers.items():
        if not (name.startswith(_RATELIMIT_PREFIX) and name.endswith("-reset")):
            continue
        window = name[: -len("-reset")]
        if not _window_limiting(headers, window):
            continue
        if (when := parse_reset(value)) is not None:
            candidates.append(when)
    future = [c for c in candidates if c > now]
    return max(future) if future else None


def backoff(base: float, failures: int, jitter: float, cap: float) -> float:
    """`base * 2**failures`, stretched by up to JITTER_SPREAD, never above `cap` (seconds)."""
    jitter = min(max(jitter, 0.0), 1.0)  # a bad jitter must not break a request: clamp it
    exponent = min(max(failures, 0), _MAX_EXPONENT)
    return float(min(cap, base * 2**exponent * (1 + JITTER_SPREAD * jitter)))


def short_backoff(failures: int, jitter: float) -> float:
    return backoff(SHORT_BACKOFF_BASE, failures, jitter, SHORT_BACKOFF_CAP)


# --- internals ----------------------------------------------------------------------------------


def _next(state: AccountState, until: float | None, failed: int, last_error: str) -> Outcome:
    return Outcome(Verdict.RETRY_NEXT, AccountUpdate(state, until, failed, last_error))


def _window_limiting(headers: Mapping[str, str], window: str) -> bool:
    remaining = headers.get(f"{window}-remaining")
    if remaining is not None:
        try:
            return float(remaining) <= 0
        except ValueError:
            pass
    status = headers.get(f"{window}-status")
    if status is not None:
        return status.strip().lower() not in ("allowed", "allowed_warning")
    utilization = headers.get(f"{window}-utilization")
    if utilization is not None:
        try:
            return float(utilization) >= 1
        except ValueError:
            pass
    return True


def _parse_error_body(body: bytes | None) -> tuple[str | None, str | None, str | None]:
    """(error.type, error.message, error.details.error_code) of an Anthropic error body."""
    if not body:
        return None, None, None
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None, None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    kind, message, details = error.get("type"), error.get("message"), error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    return (
        kind if isinstance(kind, str) else None,
        message if isinstance(message, str) else None,
        code if isinstance(code, str) else None,
    )


def _says_exhausted(message: str | None) -> bool:
    lowered = (message or "").lower()
    return any(phrase in lowered for phrase in _EXHAUSTED_PHRASES)


def _clean(text: str) -> str:
    text = _SECRET_RE.sub("[redacted]", text)
    return " ".join(text.split())  # newlines and control whitespace collapse to single spaces


def _last_error(prefix: str, error_type: str | None, message: str | None) -> str:
    """`"429 rate_limit_error: <message>"`, from the upstream's type and message only."""
    text = prefix
    if error_type:
        text += f" {_clean(error_type)}"
    if message:
        text += f": {_clean(message)}"
    if len(text) > MAX_LAST_ERROR:
        text = text[: MAX_LAST_ERROR - 1] + "…"
    return text
