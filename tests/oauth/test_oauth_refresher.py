"""The refresher against the fake provider over loopback and a real database, with a clock the
test moves: one refresh per account, backoff, cancellation, and a login that races a refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fake_oauth import CALLBACK, MANUAL_CALLBACK, SERVER_ERROR, FakeOAuth, rate_limited

from kestrel.crypto import Sealer
from kestrel.domain import Account, Credential
from kestrel.oauth.flow import OAuthConfig
from kestrel.oauth.refresher import RefreshFailed, TokenRefresher
from kestrel.oauth.tokens import TokenClient
from kestrel.store.accounts import AccountStore
from kestrel.store.database import Database

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


Body = Callable[[FakeOAuth, TokenRefresher, AccountStore, Account, Clock], Awaitable[None]]


def run(tmp_path: Path, body: Body, *, refresh_delay: float = 0.0,
        answers: tuple[tuple[str, int, int | None], ...] = ()) -> None:
    """A logged-in account `sub` whose tokens came from the fake provider, then `body`."""
    with FakeOAuth(refresh_delay=refresh_delay) as oauth:
        oauth.script_refresh(answers)
        async def main() -> None:
            db = await Database.open(tmp_path / "k.db")
            try:
                async with httpx.AsyncClient() as http:
                    config = OAuthConfig(client_id=oauth.client_id, auth_url="unused",
                                         token_url=f"{oauth.base_url}/v1/oauth/token",
                                         scopes="user:inference", redirect_uri=CALLBACK,
                                         manual_redirect_uri=MANUAL_CALLBACK)
                    tokens = TokenClient(http, config)
                    store = AccountStore(db, Sealer(bytes(32)))
                    clock = Clock()
                    issued = oauth.issue_tokens()  # as a finished login has them
                    account, _ = await store.save_oauth_login(
                        name="sub", email=None, organization=None, now=clock.now,
                        credential=Credential(access_token=issued["access_token"],
                                              refresh_token=issued["refresh_token"],
                                              expires_at=clock.now + 60, obtained_at=clock.now))
                    await body(oauth, TokenRefresher(store, tokens, clock), store, account,
                               clock)
            finally:
                await db.close()
        asyncio.run(main())


def test_fifty_concurrent_callers_share_one_refresh(tmp_path: Path) -> None:
    async def body(oauth: FakeOAuth, refresher: TokenRefresher, store: AccountStore,
                   account: Account, clock: Clock) -> None:
        stale = await store.credential(account.id)
        results = await asyncio.gather(*(refresher.refresh(account, stale) for _ in range(50)))
        assert {r.access_token for r in results} == {oauth.access_tokens[-1]}
        assert len(oauth.refreshes()) == 1
        assert await store.credential(account.id) == results[0]
        # a caller still holding the old credential gets the stored one, without a new refresh
        assert await refresher.refresh(account, stale) == results[0]
        assert len(oauth.refreshes()) == 1
    run(tmp_path, body, refresh_delay=0.2)


def test_failures_back_off_and_retry_after_is_honoured(tmp_path: Path) -> None:
    async def body(oauth: FakeOAuth, refresher: TokenRefresher, store: AccountStore,
                   account: Account, clock: Clock) -> None:
        stale = await store.credential(account.id)

        async def failure() -> RefreshFailed:
            with pytest.raises(RefreshFailed) as raised:
                await refresher.refresh(account, stale)
            assert not raised.value.invalid
            return raised.value

        first = await failure()  # 500: 5 s
        assert first.retry_at == NOW + 5 and "500" in first.message
        clock.now += 4.9
        await failure()  # still waiting: the provider is not asked
        assert len(oauth.refreshes()) == 1
        clock.now = NOW + 5
        second = await failure()  # 500 again: 10 s
        assert second.retry_at == clock.now + 10
        clock.now += 10
        third = await failure()  # 429 with retry-after: 42 s, whatever the failure count
        assert third.retry_at == clock.now + 42
        clock.now += 42
        fresh = await refresher.refresh(account, stale)
        assert fresh.access_token == oauth.access_tokens[-1]
        assert [r.status for r in oauth.refreshes()] == [500, 500, 429, 200]
        assert await store.credential(account.id) == fresh
    run(tmp_path, body, answers=(SERVER_ERROR, SERVER_ERROR, rate_limited(42)))


def test_a_caller_that_goes_away_does_not_cancel_the_refresh(tmp_path: Path) -> None:
    async def body(oauth: FakeOAuth, refresher: TokenRefresher, store: AccountStore,
                   account: Account, clock: Clock) -> None:
        stale = await store.credential(account.id)
        waiting = asyncio.create_task(refresher.refresh(account, stale))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # the refresh went on and its rotated tokens were kept
        for _ in range(100):
            if (await store.credential(account.id)).access_token != stale.access_token:
                break
            await asyncio.sleep(0.02)
        assert (await store.credential(account.id)).access_token == oauth.access_tokens[-1]
    run(tmp_path, body, refresh_delay=0.3)


def test_a_login_during_a_refresh_wins(tmp_path: Path) -> None:
    async def body(oauth: FakeOAuth, refresher: TokenRefresher, store: AccountStore,
                   account: Account, clock: Clock) -> None:
        stale = await store.credential(account.id)
        refreshing = asyncio.create_task(refresher.refresh(account, stale))
        await asyncio.sleep(0.05)
        relogin = Credential(access_token="sk-ant-oat01-RELOGIN-0123456789",
                             refresh_token="sk-ant-ort01-RELOGIN-0123456789")
        await store.save_oauth_login(name="sub", credential=relogin, email=None,
                                     organization=None, now=clock.now)
        assert await refreshing == relogin
        assert await store.credential(account.id) == relogin
    run(tmp_path, body, refresh_delay=0.3)
