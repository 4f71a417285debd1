"""The live pool of accounts: who can serve now, their opened credentials, and their outcomes.

The pool holds the accounts in memory so choosing one costs no database round trip. It is a
cache of the store, which is the truth for every process sharing the database: each state
change is written through (off the event loop) and the row the store returns replaces the
copy in memory; changes made elsewhere (the admin API of another process, a cooldown another
process learnt) arrive through the change feed, which calls `load`. Every row carries the
`version` of the change that last wrote it, so an older copy never replaces a newer one,
whatever order the writes and the feed's reads finish in.

Usage windows change with every answer, so they are kept in memory at once but written at
most every `USAGE_WRITE_SECONDS` per account, and announced to the other processes only when
their status or the account's headroom band changed (what selection looks at).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kestrel.domain import (
    ALL_COOLING_DOWN,
    NO_ACCOUNTS,
    NONE_CAN_SERVE,
    Account,
    AccountState,
    AccountStatus,
    Credential,
    KestrelError,
    NoAccountAvailable,
    RateLimited,
    RateLimits,
    UsageWindows,
)
from kestrel.egress import Proxy, parse_proxy
from kestrel.proxy.cooldown import AccountUpdate
from kestrel.proxy.rate_limits import parse_rate_limits
from kestrel.proxy.selection import Rotation, attempt_order, headroom_band
from kestrel.store.accounts import AccountStore

log = logging.getLogger("kestrel.pool")

# A busy account answers many times a second; its usage snapshot is worth a write only now and
# then. A restart loses at most this much of it, and the next answer brings it back anyway.
USAGE_WRITE_SECONDS = 10.0
# Headroom changes with every answer; a second-old figure is as good to a person reading it.
LIMITS_PARSE_SECONDS = 1.0

NO_ACCOUNTS_MESSAGE = (
    "no Anthropic account is configured: add one with POST /admin/accounts, in the dashboard, "
    "or by starting Kestrel with CLAUDE_API_KEY"
)


class AccountPool:
    def __init__(self, store: AccountStore, *, rotation: Rotation = Rotation.BALANCED) -> None:
        self._store = store
        self._rotation = rotation
        self._accounts: dict[int, Account] = {}
        # account id → (credential_version they were opened at, the opened credential, the
        # account's own proxy or None)
        self._credentials: dict[int, tuple[int, Credential, Proxy | None]] = {}
        self._last_chosen: dict[int, float] = {}
        self._usage_written: dict[int, float] = {}
        # account id → the latest rate-limit headroom seen, and when it was last written
        self._rate_limits: dict[int, RateLimits] = {}
        self._limits_written: dict[int, float] = {}

    async def load(self, changed: frozenset[int] | None = None) -> None:
        """Bring the pool up to the store (the change feed's listener for accounts).

        The whole table is read whatever `changed` names: a pool holds a handful of rows, and
        one read of them all is as cheap as one of a few and cannot miss a row.
        """
        accounts, as_of = await self._store.snapshot()
        stored = {a.id for a in accounts}
        for account_id, known in list(self._accounts.items()):
            if account_id not in stored and known.version <= as_of:
                self.remove(account_id)  # deleted (a newer one was created after the read)
        for account in accounts:
            self.put(account)

    def accounts(self) -> list[Account]:
        return list(self._accounts.values())

    def put(self, account: Account) -> None:
        """An account as the store holds it, after a write or from the change feed.

        Ignored unless newer than the copy in memory (an equal version is the same row, and
        the copy in memory may carry an outcome whose write is still on its way). Usage
        windows newer than the stored ones are kept: the store lags behind on purpose.
        """
        known = self._accounts.get(account.id)
        if known is not None:
            if account.version <= known.version:
                return
            if known.usage_windows is not None and (
                    account.usage_windows is None
                    or known.usage_windows.observed_at > account.usage_windows.observed_at):
                account = replace(account, usage_windows=known.usage_windows)
        if known is None or known.credential_version != account.credential_version:
            self._credentials.pop(account.id, None)
        self._accounts[account.id] = account

    def remove(self, account_id: int) -> None:
        self._accounts.pop(account_id, None)
        self._credentials.pop(account_id, None)
        self._last_chosen.pop(account_id, None)
        self._usage_written.pop(account_id, None)
        self._rate_limits.pop(account_id, None)
        self._limits_written.pop(account_id, None)

    def candidates(self, conversation: str | None, now: float) -> list[Account]:
        """The usable accounts in the order this request should try them."""
        return attempt_order(list(self._accounts.values()), now=now, rotation=self._rotation,
                             last_chosen=self._last_chosen, conversation=conversation)

    def current(self, account_id: int) -> Account | None:
        """The account as it is now (another request may have cooled it since it was listed)."""
        return self._accounts.get(account_id)

    def chose(self, account_id: int, now: float) -> None:
        """Marks the account as just chosen, so balanced rotation moves on to the next one
        even while this request is still in flight."""
        self._last_chosen[account_id] = now

    async def credential(self, account: Account) -> Credential:
        """The account's opened credential; its proxy is opened with it (see `proxy`)."""
        cached = self._credentials.get(account.id)
        if cached is not None and cached[0] == account.credential_version:
            return cached[1]
        credential, proxy_url = await self._store.secrets(account.id)
        proxy = None if proxy_url is None else parse_proxy(proxy_url)
        self._credentials[account.id] = (account.credential_version, credential, proxy)
        return credential

    def proxy(self, account_id: int) -> Proxy | None:
        """The account's own proxy, as opened by the last `credential` call (None: none, and
        the environment's applies)."""
        cached = self._credentials.get(account_id)
        return None if cached is None else cached[2]

    def refreshed(self, account: Account, credential: Credential, proxy: Proxy | None) -> None:
        """New OAuth tokens, already in the store, fetched through `proxy` (the account's own
        when the refresh began): cached under the credential version `account` had then.

        Storing the tokens made a new version, and the change feed may have brought it, and
        emptied the cache, before the refresh returned: the cache then held no proxy, which
        `proxy` reads as "none of its own", and the request went out through the
        environment's proxy instead. Under the old version the request goes on through the
        proxy it began with, and the next `credential` reads the store again."""
        if account.id in self._accounts:
            self._credentials[account.id] = (account.credential_version, credential, proxy)

    async def observe_usage(self, account_id: int, usage: UsageWindows, now: float) -> None:
        """Keep the latest usage windows of the account (see the module docstring)."""
        account = self._accounts.get(account_id)
        if account is None:
            return
        previous = account.usage_windows
        self._accounts[account_id] = replace(account, usage_windows=usage)
        changed = (previous is None or previous.status != usage.status
                   or headroom_band(previous, now) != headroom_band(usage, now))
        if changed or now - self._usage_written.get(account_id, float("-inf")) >= \
                USAGE_WRITE_SECONDS:
            self._usage_written[account_id] = now
            stored = await self._store.record_usage(account_id, usage, announce=changed)
            if stored is not None:
                self.put(stored)

    async def observe_rate_limits(self, account_id: int, headers: Mapping[str, str],
                                  now: float) -> None:
        """Keep the API rate-limit headroom an answer reported. Parsed at most once a second
        per account (a busy account answers far more often than anyone reads it), stored every
        USAGE_WRITE_SECONDS."""
        if not self.rate_limits_due(account_id, now) or account_id not in self._accounts:
            return
        limits = parse_rate_limits(headers, now=now)
        if limits is None:
            return
        self._rate_limits[account_id] = limits
        if now - self._limits_written.get(account_id, float("-inf")) >= USAGE_WRITE_SECONDS:
            self._limits_written[account_id] = now
            try:
                await self._store.record_rate_limits(account_id, limits)
            except Exception:
                # Shown, never acted on: an unwritable database must not fail the request.
                log.warning("could not store the rate limits of account %s", account_id)

    def rate_limits_due(self, account_id: int, now: float) -> bool:
        """Whether an answer's headroom is worth reading (see `observe_rate_limits`)."""
        seen = self._rate_limits.get(account_id)
        return seen is None or now - seen.observed_at >= LIMITS_PARSE_SECONDS

    def rate_limits(self, account_id: int) -> RateLimits | None:
        """The latest headroom this process saw for the account."""
        return self._rate_limits.get(account_id)

    async def report(self, account_id: int, update: AccountUpdate | None, now: float) -> None:
        """Apply an outcome to the account, in memory at once and then in the store."""
        account = self._accounts.get(account_id)
        if update is None or account is None:
            return
        if (account.state, account.cooldown_until, account.consecutive_failures,
                account.last_error) == (update.state, update.cooldown_until,
                                        update.consecutive_failures, update.last_error):
            return  # a healthy account served again: nothing to write
        self._accounts[account_id] = replace(
            account, state=update.state, cooldown_until=update.cooldown_until,
            consecutive_failures=update.consecutive_failures, last_error=update.last_error,
        )
        try:
            stored = await self._store.record_outcome(
                account_id, now=now, state=update.state, cooldown_until=update.cooldown_until,
                consecutive_failures=update.consecutive_failures, last_error=update.last_error,
                used=False,
            )
        except Exception:
            # An unwritable database must not turn an account's failure into the client's
            # 500: the pool in memory decides, and the next outcome writes the state again.
            log.exception("could not store the state of account %s", account_id)
            return
        if stored is not None:
            self.put(stored)

    def unavailable(self, now: float) -> Unavailable:
        """Why a request no account could serve is refused, per the state of the pool."""
        return unavailable(self._accounts.values(), now)


@dataclass(frozen=True)
class Unavailable:
    """The pool's refusal: what the client gets, and what the request log keeps."""

    error: KestrelError
    reason: str
    """`no_accounts`, `all_cooling_down` or `none_can_serve`: the log row's error type."""
    detail: str
    """The client's message, and for the operator alone which account comes back first."""


def unavailable(accounts: Iterable[Account], now: float) -> Unavailable:
    """No accounts → 503 saying how to add one; some cooling → 429 with the wait until the
    first returns; all invalid, exhausted or disabled → 503 naming those states. Account names
    stay out of the client's message: they are the operator's business."""
    accounts = list(accounts)
    if not accounts:
        return Unavailable(NoAccountAvailable(NO_ACCOUNTS_MESSAGE), NO_ACCOUNTS,
                           NO_ACCOUNTS_MESSAGE)
    cooling = [a for a in accounts
               if a.status(now) is AccountStatus.COOLDOWN and a.cooldown_until is not None]
    if cooling:
        first = min(cooling, key=lambda a: a.cooldown_until or 0.0)
        back_at = first.cooldown_until or now
        wait = max(1.0, math.ceil(back_at - now))
        message = (f"every Anthropic account is rate-limited or cooling down; the first is "
                   f"back in {int(wait)} s")
        when = datetime.fromtimestamp(back_at, UTC).isoformat(timespec="seconds")
        return Unavailable(RateLimited(message, retry_after=wait), ALL_COOLING_DOWN,
                           f"{message} ({first.name}, at {when.replace('+00:00', 'Z')})")
    states = sorted({a.status(now).value for a in accounts})
    hint = ("reset or fix them with the admin API"
            if AccountState.INVALID.value in states or AccountState.EXHAUSTED.value in states
            else "enable one with the admin API")
    message = f"no Anthropic account can serve: all are {' or '.join(states)}; {hint}"
    return Unavailable(NoAccountAvailable(message), NONE_CAN_SERVE, message)
