"""The refresher against the fake provider over loopback and a real database, with a clock the
test moves: one refresh per account, backoff, cancellation, and a login that races a refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fake_oauth import (
    CALLBACK,
    INVALID_GRANT,
    MANUAL_CALLBACK,
    SERVER_ERROR,
    FakeOAuth,
    rate_limited,
)

from kestrel.crypto import Sealer
from kestrel.domain import Account, AccountState, Credential
from kestrel.oauth.flow import OAuthConfig
from kestrel.oauth.refresher import REFRESH_LEASE_SECONDS, RefreshFailed, TokenRefresher
from kestrel.oauth.tokens import TokenClient
from kestrel.store.accounts import AccountStore
from kestrel.store.database import Database
from kestrel.store.oauth_refresh import Lease, RefreshLeases

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    oauth: FakeOAuth
    refresher: TokenRefresher
    other: TokenRefresher
    """A second process's refresher: its own connections to the same file, its own name."""
    store: AccountStore
    account: Account
    clock: Clock


Body = Callable[[Rig], Awaitable[None]]


def run(tmp_path: Path, body: Body, *, refresh_delay: float = 0.0,
        answers: tuple[tuple[str, int, int | None], ...] = ()) -> None:
    """A logged-in account `sub` whose tokens came from the fake provider, then `body`."""
    with FakeOAuth(refresh_delay=refresh_delay) as oauth:
        oauth.script_refresh(answers)
        async def main() -> None:
            db = await Database.open(tmp_path / "k.db")
            other_db = await Database.open(tmp_path / "k.db")
            try:
                async with httpx.AsyncClient() as http:
                    config = OAuthConfig(client_id=oauth.client_id, auth_url="unused",
                                         token_url=f"{oauth.base_url}/v1/oauth/token",
                                         scopes="user:inference", redirect_uri=CALLBACK,
                                         manual_redirect_uri=MANUAL_CALLBACK)
                    tokens = TokenClient(http, config)
                    sealer = Sealer(bytes(32))
                    store = AccountStore(db, sealer)
                    clock = Clock()
                    issued = oauth.issue_tokens()  # as a finished login has them
                    account, _ = await store.save_oauth_login(
                        name="sub", email=None, organization=None, now=clock.now,
                        credential=Credential(access_token=issued["access_token"],
                                              refresh_token=issued["refresh_token"],
                                              expires_at=clock.now + 60, obtained_at=clock.now))
                    await body(Rig(
                        oauth, TokenRefresher(RefreshLeases(db, sealer), tokens, clock,
                                              owner="first"),
                        TokenRefresher(RefreshLeases(other_db, sealer), tokens, clock,
                                       owner="second"),
                        store, account, clock))
            finally:
                await other_db.close()
                await db.close()
        asyncio.run(main())


def test_fifty_concurrent_callers_share_one_refresh(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        oauth, refresher, store, account = (rig.oauth, rig.refresher, rig.store, rig.account)
        stale = (await store.secrets(account.id))[0]
        results = await asyncio.gather(*(refresher.refresh(account, stale, wait=True)
                                         for _ in range(50)))
        assert {r.access_token for r in results} == {oauth.access_tokens[-1]}
        assert len(oauth.refreshes()) == 1
        assert (await store.secrets(account.id))[0] == results[0]
        # a caller still holding the old credential gets the stored one, without a new refresh
        assert await refresher.refresh(account, stale, wait=True) == results[0]
        assert len(oauth.refreshes()) == 1
    run(tmp_path, body, refresh_delay=0.2)


def test_failures_back_off_and_retry_after_is_honoured(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        oauth, refresher, store, account, clock = (
            rig.oauth, rig.refresher, rig.store, rig.account, rig.clock)
        stale = (await store.secrets(account.id))[0]

        async def failure() -> RefreshFailed:
            with pytest.raises(RefreshFailed) as raised:
                await refresher.refresh(account, stale, wait=True)
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
        fresh = await refresher.refresh(account, stale, wait=True)
        assert fresh.access_token == oauth.access_tokens[-1]
        assert [r.status for r in oauth.refreshes()] == [500, 500, 429, 200]
        assert (await store.secrets(account.id))[0] == fresh
    run(tmp_path, body, answers=(SERVER_ERROR, SERVER_ERROR, rate_limited(42)))


def test_a_caller_that_goes_away_does_not_cancel_the_refresh(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        oauth, refresher, store, account = (rig.oauth, rig.refresher, rig.store, rig.account)
        stale = (await store.secrets(account.id))[0]
        waiting = asyncio.create_task(refresher.refresh(account, stale, wait=True))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # the refresh went on and its rotated tokens were kept
        for _ in range(100):
            if ((await store.secrets(account.id))[0]).access_token != stale.access_token:
                break
            await asyncio.sleep(0.02)
        assert ((await store.secrets(account.id))[0]).access_token == oauth.access_tokens[-1]
    run(tmp_path, body, refresh_delay=0.3)


def test_a_login_during_a_refresh_wins(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        refresher, store, account, clock = (rig.refresher, rig.store, rig.account, rig.clock)
        stale = (await store.secrets(account.id))[0]
        refreshing = asyncio.create_task(refresher.refresh(account, stale, wait=True))
        await asyncio.sleep(0.05)
        relogin = Credential(access_token="sk-ant-oat01-RELOGIN-0123456789",
                             refresh_token="sk-ant-ort01-RELOGIN-0123456789")
        await store.save_oauth_login(name="sub", credential=relogin, email=None,
                                     organization=None, now=clock.now)
        assert await refreshing == relogin
        assert (await store.secrets(account.id))[0] == relogin
    run(tmp_path, body, refresh_delay=0.3)


# --- two processes on one database: the lease ------------------------------------------------


def test_two_processes_refresh_once_between_them(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        stale = (await rig.store.secrets(rig.account.id))[0]
        results = await asyncio.gather(*(
            (rig.refresher if n % 2 else rig.other).refresh(rig.account, stale, wait=True)
            for n in range(40)))
        assert {r.access_token for r in results} == {rig.oauth.access_tokens[-1]}
        assert len(rig.oauth.refreshes()) == 1
        assert (await rig.store.secrets(rig.account.id))[0] == results[0]
    run(tmp_path, body, refresh_delay=0.3)


def test_a_process_with_a_good_token_does_not_wait_for_anothers_refresh(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        stale = (await rig.store.secrets(rig.account.id))[0]
        refreshing = asyncio.create_task(rig.refresher.refresh(rig.account, stale, wait=True))
        await asyncio.sleep(0.1)
        started = asyncio.get_running_loop().time()
        with pytest.raises(RefreshFailed, match="another Kestrel process") as raised:
            await rig.other.refresh(rig.account, stale, wait=False)
        assert not raised.value.invalid and raised.value.retry_at is None
        assert asyncio.get_running_loop().time() - started < 0.25  # not the refresh's 0.5 s
        fresh = await refreshing
        # once it is done, the other process finds the new tokens in the store
        assert await rig.other.refresh(rig.account, stale, wait=True) == fresh
        assert len(rig.oauth.refreshes()) == 1
    run(tmp_path, body, refresh_delay=0.5)


def test_a_failed_refresh_backs_off_every_process(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        stale = (await rig.store.secrets(rig.account.id))[0]
        with pytest.raises(RefreshFailed) as first:
            await rig.refresher.refresh(rig.account, stale, wait=True)
        with pytest.raises(RefreshFailed) as second:
            await rig.other.refresh(rig.account, stale, wait=True)
        assert second.value.retry_at == first.value.retry_at == NOW + 42
        assert second.value.message == first.value.message
        assert len(rig.oauth.refreshes()) == 1
        rig.clock.now += 42
        fresh = await rig.other.refresh(rig.account, stale, wait=True)
        assert [r.status for r in rig.oauth.refreshes()] == [429, 200]
        assert await rig.refresher.refresh(rig.account, stale, wait=True) == fresh
    run(tmp_path, body, answers=(rate_limited(42),))


def test_a_refused_refresh_token_is_spent_once(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        stale = (await rig.store.secrets(rig.account.id))[0]
        for refresher in (rig.refresher, rig.other):
            with pytest.raises(RefreshFailed, match="invalid_grant") as raised:
                await refresher.refresh(rig.account, stale, wait=True)
            assert raised.value.invalid
        assert len(rig.oauth.refreshes()) == 1
        assert (await rig.store.get(rig.account.id)).state is AccountState.INVALID
    run(tmp_path, body, answers=(INVALID_GRANT,))


def test_a_lease_whose_process_died_is_taken_over_when_it_runs_out(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        stale = (await rig.store.secrets(rig.account.id))[0]
        db = await Database.open(tmp_path / "k.db")  # a process that claims, then dies
        try:
            held = await RefreshLeases(db, Sealer(bytes(32))).claim(
                rig.account.id, owner="gone", now=rig.clock.now,
                until=rig.clock.now + REFRESH_LEASE_SECONDS, needed=lambda _: True)
        finally:
            await db.close()
        assert held.lease is Lease.CLAIMED
        waiting = asyncio.create_task(rig.other.refresh(rig.account, stale, wait=True))
        await asyncio.sleep(0.4)
        assert not waiting.done() and not rig.oauth.refreshes()
        rig.clock.now += REFRESH_LEASE_SECONDS
        fresh = await asyncio.wait_for(waiting, 5)
        assert fresh.access_token == rig.oauth.access_tokens[-1]
        assert len(rig.oauth.refreshes()) == 1
    run(tmp_path, body)
