"""Keeping OAuth access tokens fresh: when to refresh, one refresh per account, and backoff.

The rules (pure functions below, `now` passed in):
- a refresh is due from 5 minutes before expiry, or at 80 % of the token's lifetime if that
  comes first (an 8-hour token is refreshed with 1.6 hours to spare, so a token endpoint that
  is down for a while costs nothing);
- a token is treated as expired 10 seconds early: a request sent with it must still reach
  Anthropic in time;
- after a failed refresh (other than `invalid_grant`) the account waits before the next try:
  the provider's `retry-after` when it sent one, else 5 s doubling per failure, always
  between 5 s and 5 min.

`TokenRefresher` runs one refresh per account across every process sharing the database:
the process that claims the account's lease (`kestrel/store/oauth_refresh.py`) refreshes, and
the others wait for its tokens (or, with a token that is still good, go on using it). Within a
process, every request that finds the token due joins the one refresh task in flight. Refresh
tokens rotate, so the new pair is written to the store (one transaction, which also frees the
lease) before anyone is handed the new access token: a crash after that write loses nothing,
and no request ever uses a token whose refresh token was not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kestrel.domain import Account, Credential
from kestrel.egress import Proxy
from kestrel.oauth.tokens import (
    TOKEN_TIMEOUT_SECONDS,
    InvalidGrant,
    TokenClient,
    TokenEndpointError,
)
from kestrel.store.oauth_refresh import Lease, RefreshLeases

log = logging.getLogger("kestrel.oauth")

REFRESH_LEAD_SECONDS = 300.0
REFRESH_AT_LIFETIME = 0.8
EXPIRY_SAFETY_SECONDS = 10.0
BACKOFF_MIN_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0
# A refresh holds the lease this long at most: the token call's timeout, plus time to store
# the answer. A process that dies mid-refresh frees the lease when it runs out.
REFRESH_LEASE_SECONDS = TOKEN_TIMEOUT_SECONDS + 15.0
# While another process refreshes, the store is asked again this often, by requests waiting
# for its tokens and by those going on with a still-valid token alike.
RECHECK_SECONDS = 0.1

RECONNECT_HINT = ("reconnect it: `kestrel accounts login {name}` or the dashboard's "
                  "Connect button")


def refresh_due(credential: Credential, now: float) -> bool:
    """True once the access token should be replaced (see the module docstring).

    A token with no known expiry is never refreshed ahead of time, only after a 401.
    """
    if credential.expires_at is None:
        return False
    due = credential.expires_at - REFRESH_LEAD_SECONDS
    issued = credential.obtained_at
    if issued is not None and issued < credential.expires_at:
        due = min(due, issued + REFRESH_AT_LIFETIME * (credential.expires_at - issued))
    return now >= due


def expired(credential: Credential, now: float) -> bool:
    return (credential.expires_at is not None
            and now >= credential.expires_at - EXPIRY_SAFETY_SECONDS)


def refresh_backoff(failures: int, retry_after: float | None) -> float:
    """Seconds to wait after the `failures`-th failed refresh in a row (1 for the first)."""
    wanted = retry_after if retry_after is not None else (
        BACKOFF_MIN_SECONDS * 2 ** min(max(failures - 1, 0), 16))
    return min(BACKOFF_MAX_SECONDS, max(BACKOFF_MIN_SECONDS, wanted))


class RefreshFailed(Exception):
    """No fresh token for now. `invalid`: the refresh token is dead and only a new login helps;
    else `retry_at` says when a refresh may be tried again. The message is for `last_error`."""

    def __init__(self, message: str, *, invalid: bool, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.invalid = invalid
        self.retry_at = retry_at


class _Elsewhere(Exception):
    """Another process holds the lease: its tokens are on their way."""


REFRESHING_ELSEWHERE = "another Kestrel process is refreshing the OAuth tokens"


@dataclass(frozen=True)
class _Note:
    """What this process last learnt from the lease, so requests asking again within
    `not_before` are answered without a database round trip."""

    token_digest: bytes  # which refresh token it is about: a new login starts with a clean slate
    not_before: float
    message: str
    elsewhere: bool  # another process is refreshing (else: backing off after a failure)


def _digest(token: str | None) -> bytes:
    return hashlib.sha256((token or "").encode()).digest()


class TokenRefresher:
    def __init__(self, leases: RefreshLeases, tokens: TokenClient, clock: Callable[[], float],
                 *, owner: str,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`owner` names this process in the lease; it must be unique among the processes
        sharing the database."""
        self._leases = leases
        self._tokens = tokens
        self._clock = clock
        self._owner = owner
        self._sleep = sleep
        self._in_flight: dict[int, asyncio.Task[Credential]] = {}
        self._notes: dict[int, _Note] = {}

    async def refresh(self, account: Account, stale: Credential, *, wait: bool,
                      proxy: Proxy | None = None) -> Credential:
        """A credential newer than `stale`, or `RefreshFailed`. `proxy`: the account's own.

        `wait`: `stale` cannot be used any more (expired, or refused upstream), so wait for
        another process's refresh to finish rather than fail at once. The refresh runs in its
        own task, shielded from the callers: a client hanging up must not cancel a refresh
        whose rotated tokens the provider has already issued, nor fail the others waiting.
        """
        give_up = self._clock() + 2 * REFRESH_LEASE_SECONDS
        while True:
            note = self._notes.get(account.id)
            if (note is not None and note.token_digest == _digest(stale.refresh_token)
                    and self._clock() < note.not_before and not (note.elsewhere and wait)):
                raise RefreshFailed(note.message, invalid=False,
                                    retry_at=None if note.elsewhere else note.not_before)
            try:
                return await asyncio.shield(self._join(account, stale, proxy))
            except _Elsewhere:
                if not wait:
                    raise RefreshFailed(REFRESHING_ELSEWHERE, invalid=False) from None
            if self._clock() >= give_up:
                raise RefreshFailed(f"{REFRESHING_ELSEWHERE}, and it has not finished",
                                    invalid=False, retry_at=self._clock() + BACKOFF_MIN_SECONDS)
            await self._sleep(RECHECK_SECONDS)

    def _join(self, account: Account, stale: Credential,
              proxy: Proxy | None) -> asyncio.Task[Credential]:
        task = self._in_flight.get(account.id)
        if task is None:
            task = asyncio.create_task(self._refresh(account, stale, proxy))
            self._in_flight[account.id] = task
            task.add_done_callback(lambda done: self._finished(account.id, done))
        return task

    def _finished(self, account_id: int, task: asyncio.Task[Credential]) -> None:
        if self._in_flight.get(account_id) is task:
            del self._in_flight[account_id]
        if not task.cancelled():
            task.exception()  # retrieved here, so one nobody waited for is not reported as lost

    async def _refresh(self, account: Account, stale: Credential,
                       proxy: Proxy | None) -> Credential:
        now = self._clock()
        claim = await self._leases.claim(
            account.id, owner=self._owner, now=now, until=now + REFRESH_LEASE_SECONDS,
            # Refreshed (or reconnected) since the caller read its credential: nothing to do.
            needed=lambda current: (current.access_token == stale.access_token
                                    or refresh_due(current, now)))
        current = claim.current
        match claim.lease:
            case Lease.FRESH:
                return current
            case Lease.INVALID:
                raise RefreshFailed(claim.message or "the account is invalid; "
                                    f"{RECONNECT_HINT.format(name=account.name)}", invalid=True)
            case Lease.ELSEWHERE:
                self._notes[account.id] = _Note(_digest(current.refresh_token),
                                                now + RECHECK_SECONDS, REFRESHING_ELSEWHERE,
                                                elsewhere=True)
                raise _Elsewhere
            case Lease.BACKOFF:
                until = claim.until if claim.until is not None else now + BACKOFF_MIN_SECONDS
                message = claim.message or "a recent token refresh failed"
                self._notes[account.id] = _Note(_digest(current.refresh_token), until, message,
                                                elsewhere=False)
                raise RefreshFailed(message, invalid=False, retry_at=until)
        try:
            return await self._spend(account, current.refresh_token, claim.failures, now,
                                     proxy)
        except BaseException:
            # A lease still in our name is given up, so it does not block every process until
            # it runs out (no refresh token, tokens not stored, cancelled). A backoff has
            # already taken our name off it and stays.
            with contextlib.suppress(Exception):
                await self._leases.release(account.id, owner=self._owner)
            raise

    async def _spend(self, account: Account, refresh_token: str | None, failures: int,
                     now: float, proxy: Proxy | None) -> Credential:
        """Spend the refresh token, holding the lease; record the outcome in the store."""
        if not refresh_token:
            raise RefreshFailed(f"this OAuth account has no refresh token; "
                                f"{RECONNECT_HINT.format(name=account.name)}", invalid=True)
        try:
            grant = await self._tokens.refresh(refresh_token, now=now, proxy=proxy)
        except InvalidGrant:
            log.warning("account %s: the refresh token was refused (invalid_grant)",
                        account.name, extra={"account": {"id": account.id}})
            message = (f"the OAuth refresh token was refused (invalid_grant): "
                       f"{RECONNECT_HINT.format(name=account.name)}")
            await self._quietly(self._leases.refused(account.id, owner=self._owner,
                                                     message=message, now=now))
            raise RefreshFailed(message, invalid=True) from None
        except TokenEndpointError as exc:
            failures += 1
            wait = refresh_backoff(failures, exc.retry_after)
            message = f"token refresh failed: {exc.message}; next try in {wait:.0f} s"
            self._notes[account.id] = _Note(_digest(refresh_token), now + wait, message,
                                            elsewhere=False)
            log.warning("account %s: %s", account.name, message,
                        extra={"account": {"id": account.id}})
            await self._quietly(self._leases.failed(account.id, owner=self._owner,
                                                    until=now + wait, failures=failures,
                                                    message=message))
            raise RefreshFailed(message, invalid=False, retry_at=now + wait) from None
        fresh = grant.credential(previous_refresh_token=refresh_token)
        try:
            stored = await self._leases.succeeded(account.id, fresh, replaces=refresh_token,
                                                  owner=self._owner, now=now)
        except Exception:
            # The provider has rotated the refresh token but we could not keep the new one:
            # the account will need a new login. Say so loudly; never use an unsaved token.
            log.exception("account %s: could not store refreshed OAuth tokens", account.name,
                          extra={"account": {"id": account.id}})
            raise RefreshFailed("refreshed OAuth tokens could not be stored; "
                                f"{RECONNECT_HINT.format(name=account.name)}",
                                invalid=False, retry_at=now + BACKOFF_MIN_SECONDS) from None
        self._notes.pop(account.id, None)
        log.info("account %s: OAuth tokens refreshed", account.name,
                 extra={"account": {"id": account.id}})
        return stored

    @staticmethod
    async def _quietly(write: Awaitable[None]) -> None:
        """Record a failed refresh; a database that refuses only costs the lease's own expiry
        (the request already has its answer: the refresh failed)."""
        try:
            await write
        except Exception:
            log.exception("could not record the outcome of a token refresh")
