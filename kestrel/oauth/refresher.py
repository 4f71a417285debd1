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

`TokenRefresher` runs at most one refresh per account at a time: every request that finds the
token due joins the refresh in flight. Refresh tokens rotate, so the new pair is written to the
store (one transaction) before anyone is handed the new access token: a crash after that write
loses nothing, and no request ever uses a token whose refresh token was not kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kestrel.domain import Account, Credential
from kestrel.oauth.tokens import InvalidGrant, TokenClient, TokenEndpointError
from kestrel.store.accounts import AccountStore

log = logging.getLogger("kestrel.oauth")

REFRESH_LEAD_SECONDS = 300.0
REFRESH_AT_LIFETIME = 0.8
EXPIRY_SAFETY_SECONDS = 10.0
BACKOFF_MIN_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 300.0

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


@dataclass(frozen=True)
class _Backoff:
    token_digest: bytes  # which refresh token failed: a new login starts with a clean slate
    not_before: float
    failures: int
    message: str


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenRefresher:
    def __init__(self, store: AccountStore, tokens: TokenClient,
                 clock: Callable[[], float]) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._in_flight: dict[int, asyncio.Task[Credential]] = {}
        self._backoff: dict[int, _Backoff] = {}

    async def refresh(self, account: Account, stale: Credential) -> Credential:
        """A credential newer than `stale`, or `RefreshFailed`.

        Joins the account's refresh in flight, if any. The refresh runs in its own task and is
        shielded from the callers: a client hanging up must not cancel a refresh whose rotated
        tokens the provider has already issued, nor fail the other requests waiting on it.
        """
        backoff = self._backoff.get(account.id)
        if (backoff is not None and stale.refresh_token is not None
                and backoff.token_digest == _digest(stale.refresh_token)
                and self._clock() < backoff.not_before):
            # Still waiting after a failure: say so without even reading the store, since a
            # valid token keeps being used and every request asks again.
            raise RefreshFailed(backoff.message, invalid=False, retry_at=backoff.not_before)
        task = self._in_flight.get(account.id)
        if task is None:
            task = asyncio.create_task(self._refresh(account, stale))
            self._in_flight[account.id] = task
            task.add_done_callback(lambda done: self._finished(account.id, done))
        return await asyncio.shield(task)

    def _finished(self, account_id: int, task: asyncio.Task[Credential]) -> None:
        if self._in_flight.get(account_id) is task:
            del self._in_flight[account_id]
        if not task.cancelled():
            task.exception()  # retrieved here, so one nobody waited for is not reported as lost

    async def _refresh(self, account: Account, stale: Credential) -> Credential:
        now = self._clock()
        current = await self._store.credential(account.id)
        if current.access_token != stale.access_token and not refresh_due(current, now):
            return current  # refreshed (or reconnected) since the caller read its credential
        refresh_token = current.refresh_token
        if not refresh_token:
            raise RefreshFailed(f"this OAuth account has no refresh token; "
                                f"{RECONNECT_HINT.format(name=account.name)}", invalid=True)
        backoff = self._backoff.get(account.id)
        if backoff is not None and backoff.token_digest != _digest(refresh_token):
            backoff = None
        if backoff is not None and now < backoff.not_before:
            raise RefreshFailed(backoff.message, invalid=False, retry_at=backoff.not_before)
        try:
            grant = await self._tokens.refresh(refresh_token, now=now)
        except InvalidGrant:
            log.warning("account %s: the refresh token was refused (invalid_grant)",
                        account.name, extra={"account": {"id": account.id}})
            raise RefreshFailed(
                f"the OAuth refresh token was refused (invalid_grant): "
                f"{RECONNECT_HINT.format(name=account.name)}", invalid=True) from None
        except TokenEndpointError as exc:
            failures = backoff.failures + 1 if backoff is not None else 1
            wait = refresh_backoff(failures, exc.retry_after)
            message = f"token refresh failed: {exc.message}; next try in {wait:.0f} s"
            self._backoff[account.id] = _Backoff(_digest(refresh_token), now + wait, failures,
                                                 message)
            log.warning("account %s: %s", account.name, message,
                        extra={"account": {"id": account.id}})
            raise RefreshFailed(message, invalid=False, retry_at=now + wait) from None
        fresh = grant.credential(previous_refresh_token=refresh_token)
        try:
            stored = await self._store.replace_credential(account.id, fresh,
                                                          replaces=refresh_token)
        except Exception:
            # The provider has rotated the refresh token but we could not keep the new one:
            # the account will need a new login. Say so loudly; never use an unsaved token.
            log.exception("account %s: could not store refreshed OAuth tokens", account.name,
                          extra={"account": {"id": account.id}})
            raise RefreshFailed("refreshed OAuth tokens could not be stored; "
                                f"{RECONNECT_HINT.format(name=account.name)}",
                                invalid=False, retry_at=now + BACKOFF_MIN_SECONDS) from None
        self._backoff.pop(account.id, None)
        log.info("account %s: OAuth tokens refreshed", account.name,
                 extra={"account": {"id": account.id}})
        return stored
