"""Plain values shared by every layer: accounts, client keys, their states, and the errors.

Nothing here does I/O. The exception tree is deliberately small: each surface (Anthropic,
OpenAI, admin JSON) renders these into its own wire shape in exactly one place.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Final, NamedTuple


class AccountType(enum.StrEnum):
    API_KEY = "api_key"
    OAUTH = "oauth"


class AccountState(enum.StrEnum):
    """What the account's last upstream outcomes left it in, as stored.

    `cooldown` and `disabled` are not stored states: they follow from `cooldown_until`
    and `enabled`, see `Account.status`.
    """

    OK = "ok"
    INVALID = "invalid"
    EXHAUSTED = "exhausted"


class AccountStatus(enum.StrEnum):
    """What an operator sees: the state folded together with `enabled` and the clock."""

    ACTIVE = "active"
    COOLDOWN = "cooldown"
    DISABLED = "disabled"
    INVALID = "invalid"
    EXHAUSTED = "exhausted"


# Enum members in Python 3.11: `AccountStatus.ACTIVE` is read through `EnumType.__getattr__`,
# about 0.1 µs each time (3.12 dropped that hook), where a plain name costs a tenth of that. Code
# run for every request binds the members it reads to plain names once, as here for
# `Account.status`, which runs for each account on every request.
_DISABLED, _COOLDOWN = AccountStatus.DISABLED, AccountStatus.COOLDOWN
_ACTIVE = AccountStatus.ACTIVE
_HARD_STATUS = {AccountState.INVALID: AccountStatus.INVALID,
                AccountState.EXHAUSTED: AccountStatus.EXHAUSTED}


@dataclass(frozen=True)
class Credential:
    """An account's secret material, only ever held in memory once opened.

    `repr=False` on every secret keeps them out of tracebacks and log lines that format
    the object by accident.
    """

    api_key: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    obtained_at: float | None = None
    """When the access token was issued: with `expires_at` it gives the token's lifetime, which
    decides when a refresh is due (see `kestrel/oauth/refresher.py`)."""


@dataclass(frozen=True)
class UsageWindow:
    """One subscription usage window (`5h`, `7d`, ...) as the latest upstream answer told it.

    `utilization` is a fraction of the window's allowance (1.0 = all of it; it can pass 1);
    `reset_at` is when the window starts over (epoch seconds).
    """

    name: str
    status: str | None = None
    utilization: float | None = None
    reset_at: float | None = None


@dataclass(frozen=True)
class UsageWindows:
    """The `anthropic-ratelimit-unified-*` headers of an account's latest upstream answer.

    `status` (`allowed`, `allowed_warning`, `rejected`) and `reset_at` are the overall verdict;
    `windows` holds each window that was reported, `5h` and `7d` first.
    """

    observed_at: float
    status: str | None = None
    reset_at: float | None = None
    representative_claim: str | None = None
    windows: tuple[UsageWindow, ...] = ()


@dataclass(frozen=True)
class Headroom:
    """One API rate limit as an answer reported it: `requests`, `tokens`, `input_tokens` or
    `output_tokens`; each part None when its header was missing or did not parse."""

    name: str
    limit: int | None
    remaining: int | None
    reset_at: float | None


@dataclass(frozen=True)
class RateLimits:
    """The `anthropic-ratelimit-*` headers (requests and tokens) of an API-key account's latest
    answer: how much of its rate limits is left."""

    observed_at: float
    limits: tuple[Headroom, ...] = ()


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    type: AccountType
    base_url: str | None
    priority: int
    enabled: bool
    state: AccountState
    cooldown_until: float | None
    consecutive_failures: int
    last_error: str | None
    last_used_at: float | None
    created_at: float
    updated_at: float
    credential_hint: str
    email: str | None = None
    """OAuth accounts: who signed in, as the token answer said; shown to the operator."""
    organization: str | None = None
    usage_windows: UsageWindows | None = None
    version: int = 0
    """The id of the change that last wrote the row: of two copies, the higher is newer."""
    credential_version: int = 0
    """Likewise for the credential (and the proxy) alone, so a cached opened credential
    outlives a cooldown."""
    proxy_hint: str | None = None
    """The account's own egress proxy, its password masked; None: the environment's, if any."""
    rate_limits: RateLimits | None = None

    def status(self, now: float) -> AccountStatus:
        """Disabled beats everything; a hard state (invalid, exhausted) beats a cooldown."""
        if not self.enabled:
            return _DISABLED
        hard = _HARD_STATUS.get(self.state)
        if hard is not None:
            return hard
        if self.cooldown_until is not None and self.cooldown_until > now:
            return _COOLDOWN
        return _ACTIVE

    def usable(self, now: float) -> bool:
        """Whether a request may try the account now (its status is active)."""
        return self.status(now) is _ACTIVE


class Unset(enum.Enum):
    """The type of `UNSET`."""

    UNSET = "UNSET"


# In an update, a field left out (UNSET) stays as it is; None clears it.
UNSET: Final = Unset.UNSET


@dataclass(frozen=True)
class ApiKey:
    """A client key as stored: never the key itself, only its hash and a display prefix."""

    id: int
    name: str
    prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    # What the operator allows it (None: no limit): model names (`*` matches any run of
    # characters), and the moment it stops working.
    models: tuple[str, ...] | None = None
    expires_at: float | None = None
    # Networks (CIDR) the key may be used from.
    allowed_ips: tuple[str, ...] | None = None
    # Who holds it and why, shown to operators only.
    owner: str | None = None
    note: str | None = None
    # How much it may use (None: unlimited); see kestrel/proxy/key_limits.py.
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    daily_tokens: int | None = None
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @functools.cached_property
    def limited(self) -> bool:
        """It has a usage limit, which each of its requests must be counted against (worked out
        once: the key cache hands the same object to every request)."""
        return any(limit is not None for limit in (
            self.rpm, self.tpm, self.max_concurrency, self.daily_tokens, self.daily_budget_usd,
            self.monthly_budget_usd))


def one_line(text: str | None, limit: int) -> str:
    """`text` on one line (every run of whitespace a single space), cut to `limit` characters
    with an ellipsis: an error message as a table cell or a log column can hold it."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def mask_secret(secret: str) -> str:
    """A hint that lets an operator recognise a credential without revealing it.

    Keeps a recognisable family prefix (`sk-ant-`, `kst_`) and the last four characters; short
    secrets show nothing but their family, so a hint never holds more than a guessable fraction.
    """
    family = next((f for f in ("sk-ant-", "sk-", "kst_") if secret.startswith(f)), "")
    if len(secret) < 16:
        return f"{family}…"
    return f"{family}…{secret[-4:]}"


# --- errors -------------------------------------------------------------------------------------


# Why Kestrel answered a request itself for want of an account: the request log's error type
# (kestrel/proxy/pool.py decides which; the stats count them as the pool's errors).
NO_ACCOUNTS = "no_accounts"
ALL_COOLING_DOWN = "all_cooling_down"
NONE_CAN_SERVE = "none_can_serve"
POOL_REFUSALS = frozenset({NO_ACCOUNTS, ALL_COOLING_DOWN, NONE_CAN_SERVE})


class KestrelError(Exception):
    """Base of every error Kestrel turns into an HTTP answer.

    `status` and `type` are the Anthropic-flavoured defaults; each surface maps them to its own
    shape. `field` names the offending input where there is one (admin API, OpenAI `param`).
    """

    status: int = 500
    type: str = "api_error"
    final: bool = False
    """Retrying the same request cannot help: clients are told not to (`x-should-retry:
    false`, which the official SDKs and Claude Code obey) and show the message at once."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ClientError(KestrelError):
    """The request is wrong; retrying it unchanged will not help."""

    status = 400
    type = "invalid_request_error"


class ValidationError(ClientError):
    """Well-formed JSON whose content is not acceptable (wrong type, missing or bad value)."""

    status = 422


class AuthenticationError(ClientError):
    status = 401
    type = "authentication_error"
    # The same key again is refused again; Claude Code would otherwise retry a 401 ten times,
    # for about three minutes, before showing why.
    final = True


class UnknownClientKey(AuthenticationError):
    """A proxy request without a key Kestrel serves. `reason` (`missing_key`, `unknown_key`,
    `revoked_key`), `key_id` (a revoked key's) and `hint` (what was presented, masked) are for
    the request log, never for the answer."""

    def __init__(self, message: str, *, reason: str, key_id: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key_id = key_id
        self.hint = hint


class PermissionDenied(ClientError):
    status = 403
    type = "permission_error"


class KeyRefused(PermissionDenied):
    """A client key used beyond what the operator allows it; `reason` names the control for
    the request log and /metrics (`key_expired`, `model_not_allowed`)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(ClientError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(ClientError):
    status = 405

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(ClientError):
    status = 409
    type = "conflict_error"


class PayloadTooLarge(ClientError):
    status = 413
    type = "request_too_large"


class RequestTimeout(ClientError):
    """The client stopped sending its request body."""

    status = 408
    type = "timeout_error"


class RateLimited(ClientError):
    """Too many requests from this client, or (for the pool) every account is cooling down.

    `final`: retrying soon cannot help (a budget spent until tomorrow): the message is shown at
    once instead of after minutes of backoff."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float | None = None,
                 final: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.final = final


class KeyOverLimit(RateLimited):
    """A client key over one of its limits; `reason` names the limit (`rpm`,
    `daily_budget_usd`...) for the request log and /metrics, as KeyRefused does."""

    def __init__(self, message: str, *, reason: str, retry_after: float | None = None,
                 final: bool = False) -> None:
        super().__init__(message, retry_after=retry_after, final=final)
        self.reason = reason


class UpstreamError(KestrelError):
    """Anthropic could not be reached or answered in a way no account retry fixed."""

    status = 502
    type = "api_error"


class NoAccountAvailable(KestrelError):
    """No account can serve: none configured, or all invalid / disabled / exhausted."""

    status = 503
    type = "api_error"


class DatabaseUnavailable(KestrelError):
    """The database cannot be reached or written now (a server away, a locked or full file);
    the same request may succeed once it is back."""

    status = 503
    type = "api_error"


class StoreError(Exception):
    """The database cannot be used as it is (newer schema, unreadable file). Stops the start."""


class ConfigError(Exception):
    """One or more settings are wrong; each problem is one line the operator can act on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- request logs -------------------------------------------------------------------------------
# Made for every request, so immutable as named tuples rather than frozen dataclasses: a frozen
# dataclass sets each field through `object.__setattr__`, and a request log row cost 36,500
# instructions to make that way against 9,000 as a named tuple (bench/RESULTS.md, run 12).


class Attempt(NamedTuple):
    """One try of one account for a client request."""

    account_id: int
    status: int | None  # None: no HTTP answer (connect error, timeout, reset)
    error_type: str | None
    duration_ms: float
    proxy: str | None = None
    """The proxy that failed (`proxy_*` error types), by scheme, host and port."""
    message: str | None = None
    """What the upstream said of its error (scrubbed of the credential)."""
    account_name: str | None = None
    """The account's name when the request was made: the log keeps it after a rename or a
    deletion."""


# The token counts of an Anthropic `usage` object, as it names them: what the proxy's usage
# reader and the OpenAI translation both read.
USAGE_FIELDS: Final = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                       "cache_read_input_tokens")


class RequestLog(NamedTuple):
    """One row per client request on a proxy route, whatever became of it."""

    ts: float
    request_id: str
    route: str
    status: int
    key_id: int | None = None
    account_id: int | None = None
    model: str | None = None
    stream: bool = False
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    """False: the model was not in the price table and `cost_usd` is 0, not its cost."""
    latency_ms: float = 0.0
    ttfb_ms: float | None = None
    client: str | None = None
    user_agent: str | None = None
    attempts: tuple[Attempt, ...] = ()
    error_message: str | None = None
    """Why it failed in words: the upstream's message, or why Kestrel answered itself."""
