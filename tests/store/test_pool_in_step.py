"""Two pools on one database file, each with its own connections (as two processes have): what
one learns or changes, the other takes from the store, and an older copy of an account never
replaces a newer one, whatever order writes and reads finish in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from kestrel.crypto import Sealer
from kestrel.domain import AccountState, AccountStatus, AccountType, Credential
from kestrel.proxy.cooldown import AccountUpdate
from kestrel.proxy.pool import AccountPool
from kestrel.store.accounts import AccountProxy, AccountStore
from kestrel.store.database import Database

NOW = 1_800_000_000.0
KEY = Sealer(bytes(range(32)))


Stores = tuple[AccountStore, AccountStore]
Body = Callable[[Stores, AccountPool, AccountPool], Awaitable[None]]


def run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        first_db = await Database.open(tmp_path / "k.db")
        second_db = await Database.open(tmp_path / "k.db")
        try:
            stores = AccountStore(first_db, KEY), AccountStore(second_db, KEY)
            await body(stores, AccountPool(stores[0]), AccountPool(stores[1]))
        finally:
            await second_db.close()
            await first_db.close()
    asyncio.run(main())


def status(pool: AccountPool, account_id: int) -> AccountStatus:
    account = pool.current(account_id)
    assert account is not None
    return account.status(NOW)


async def _account(store: AccountStore, name: str) -> int:
    account = await store.create(name=name, type=AccountType.API_KEY,
                                 credential=Credential(api_key=f"sk-ant-api03-{name}-0123456789"),
                                 now=NOW)
    return account.id


def test_a_cooldown_learnt_by_one_pool_reaches_the_other(tmp_path: Path) -> None:
    async def body(stores: Stores, one: AccountPool,
                   other: AccountPool) -> None:
        account_id = await _account(stores[0], "a")
        await one.load()
        await other.load()
        await one.report(account_id, AccountUpdate(AccountState.OK, NOW + 60, 1, "429"), NOW)
        await other.load()
        assert status(other, account_id) is AccountStatus.COOLDOWN
        assert other.current(account_id) == one.current(account_id)
    run(tmp_path, body)


def test_an_older_copy_never_replaces_a_newer_one(tmp_path: Path) -> None:
    async def body(stores: Stores, one: AccountPool,
                   other: AccountPool) -> None:
        account_id = await _account(stores[0], "a")
        await one.load()
        before = one.current(account_id)
        assert before is not None
        await one.report(account_id, AccountUpdate(AccountState.OK, NOW + 60, 1, "429"), NOW)
        # a feed read that started before the cooldown was written, finishing after it
        one.put(before)
        assert status(one, account_id) is AccountStatus.COOLDOWN
        # the same version again (a re-read of an unchanged row) leaves the copy in memory,
        # which may carry an outcome still being written
        current = one.current(account_id)
        assert current is not None
        one.put(replace(current, cooldown_until=None))
        assert status(one, account_id) is AccountStatus.COOLDOWN
        # an operator's change through the other process is newer: it wins
        changed = await stores[1].reset(account_id, now=NOW + 1)
        await one.load()
        assert one.current(account_id) == changed
    run(tmp_path, body)


def test_a_delete_reaches_the_other_pool_and_a_newer_account_stays(tmp_path: Path) -> None:
    async def body(stores: Stores, one: AccountPool,
                   other: AccountPool) -> None:
        doomed = await _account(stores[0], "a")
        await other.load()
        await stores[0].delete(doomed, now=NOW)
        # created through the other process after its pool read the table: kept by `put`
        # (the admin API's way) even though the next load's snapshot may predate it
        newer = await stores[1].create(name="b", type=AccountType.API_KEY,
                                       credential=Credential(api_key="sk-ant-api03-b-0123456789"),
                                       now=NOW)
        other.put(newer)
        await other.load()
        assert [a.name for a in other.accounts()] == ["b"]
    run(tmp_path, body)


def test_a_refresh_the_change_feed_overtook_keeps_the_account_on_its_own_proxy(
        tmp_path: Path) -> None:
    """Storing refreshed tokens makes a new credential version; the change feed may bring it,
    emptying the pool's cache, before the refresh returns. The request must still leave
    through the account's own proxy, not the environment's."""
    async def body(stores: Stores, pool: AccountPool, _: AccountPool) -> None:
        own = AccountProxy(url="http://127.0.0.1:3128", hint="http://127.0.0.1:3128")
        created = await stores[0].create(
            name="a", type=AccountType.API_KEY, proxy=own, now=NOW,
            credential=Credential(api_key="sk-ant-api03-a-0123456789"))
        await pool.load()
        began = pool.current(created.id)
        assert began is not None
        await pool.credential(began)
        proxy = pool.proxy(created.id)
        assert proxy is not None and proxy.port == 3128
        fresh = Credential(api_key="sk-ant-api03-a-fresh-0123456789")
        await stores[0].update(created.id, credential=fresh, now=NOW)  # the refresh stores
        await pool.load()  # the change feed, before the refresh returns
        assert pool.proxy(created.id) is None  # the cache is empty
        pool.refreshed(began, fresh, proxy)
        assert pool.proxy(created.id) == proxy
        now = pool.current(created.id)
        assert now is not None and now.credential_version != began.credential_version
        assert await pool.credential(now) == fresh  # read from the store again
        assert pool.proxy(created.id) == proxy
    run(tmp_path, body)
