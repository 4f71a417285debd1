"""Accounts on a real database file: CRUD, errors, failure state, and secrets sealed at rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from kestrel.crypto import CryptoError, Sealer
from kestrel.domain import (
    AccountState,
    AccountStatus,
    AccountType,
    Attempt,
    Conflict,
    Credential,
    NotFound,
    RequestLog,
    StoreError,
    ValidationError,
)
from kestrel.store.accounts import AccountProxy, AccountStore
from kestrel.store.database import Database
from kestrel.store.meta import check_encryption_key
from kestrel.store.request_logs import RequestLogStore

from support.db import raw, with_db

T = TypeVar("T")
KEY = bytes(range(32))
API_KEY = "sk-ant-api03-" + "Qx7" * 30 + "tail"
OTHER_KEY = "sk-ant-api03-" + "Zp4" * 30 + "last"
ACCESS_TOKEN = "sk-ant-oat01-" + "Ac9" * 30
REFRESH_TOKEN = "sk-ant-ort01-" + "Rf2" * 30


def with_store(path: Path, body: Callable[[AccountStore], Awaitable[T]], key: bytes = KEY) -> T:
    return with_db(path, lambda db: body(AccountStore(db, Sealer(key))))


def test_create_get_list_and_open_the_credential(db_target: str) -> None:
    async def body(store: AccountStore) -> None:
        low = await store.create(name="low", type=AccountType.API_KEY,
                                 credential=Credential(api_key=API_KEY), now=100.0)
        high = await store.create(name="high", type=AccountType.OAUTH, priority=5,
                                  credential=Credential(access_token=ACCESS_TOKEN,
                                                        refresh_token=REFRESH_TOKEN,
                                                        expires_at=2000.5),
                                  base_url="https://example.test", enabled=False, now=101.0)
        also_low = await store.create(name="also-low", type=AccountType.API_KEY,
                                      credential=Credential(api_key=OTHER_KEY), now=102.0)
        assert (low.name, low.type, low.priority, low.enabled, low.state) == (
            "low", AccountType.API_KEY, 0, True, AccountState.OK)
        assert (low.created_at, low.updated_at, low.last_used_at) == (100.0, 100.0, None)
        assert low.credential_hint == "sk-ant-…tail"
        assert (high.base_url, high.enabled, high.status(0)) == (
            "https://example.test", False, AccountStatus.DISABLED)
        assert await store.get(high.id) == high
        assert [a.name for a in await store.list()] == ["high", "low", "also-low"]
        assert (await store.secrets(low.id))[0] == Credential(api_key=API_KEY)
        opened = (await store.secrets(high.id))[0]
        assert (opened.access_token, opened.refresh_token, opened.expires_at) == (
            ACCESS_TOKEN, REFRESH_TOKEN, 2000.5)
        assert API_KEY not in repr(low) + repr((await store.secrets(low.id))[0])
        assert also_low.id > low.id
    with_store(db_target, body)


def test_duplicate_name_missing_secret_and_missing_rows_are_errors(db_target: str) -> None:
    async def body(store: AccountStore) -> None:
        first = await store.create(name="a", type=AccountType.API_KEY,
                                   credential=Credential(api_key=API_KEY), now=1.0)
        await store.create(name="b", type=AccountType.API_KEY,
                           credential=Credential(api_key=OTHER_KEY), now=1.0)
        with pytest.raises(Conflict) as caught:
            await store.create(name="a", type=AccountType.API_KEY,
                               credential=Credential(api_key=OTHER_KEY), now=2.0)
        assert (caught.value.message, caught.value.field) == ("an account named 'a' exists", "name")
        with pytest.raises(Conflict):
            await store.update(first.id, name="b", now=2.0)
        with pytest.raises(ValidationError):
            await store.create(name="c", type=AccountType.OAUTH,
                               credential=Credential(api_key=API_KEY), now=2.0)
        with pytest.raises(NotFound, match="^account 77 not found$"):
            await store.get(77)
        for call in (store.delete(77, now=3.0), store.reset(77, now=3.0),
                     store.update(77, now=3.0),
                     store.secrets(77)):
            with pytest.raises(NotFound):
                await call
        assert [a.name for a in await store.list()] == ["a", "b"]  # failed calls left no trace
        await store.delete(first.id, now=4.0)
        with pytest.raises(NotFound):
            await store.delete(first.id, now=4.0)
        assert [a.name for a in await store.list()] == ["b"]
    with_store(db_target, body)


def test_update_changes_only_the_given_fields(db_target: str) -> None:
    async def body(store: AccountStore) -> None:
        a = await store.create(name="a", type=AccountType.API_KEY, base_url="https://one.test",
                               credential=Credential(api_key=API_KEY), priority=3, now=1.0)
        renamed = await store.update(a.id, name="renamed", now=2.0)
        assert (renamed.name, renamed.base_url, renamed.priority, renamed.updated_at) == (
            "renamed", "https://one.test", 3, 2.0)
        kept = await store.update(a.id, priority=9, enabled=False, now=3.0)
        assert (kept.base_url, kept.priority, kept.enabled, kept.created_at) == (
            "https://one.test", 9, False, 1.0)
        cleared = await store.update(a.id, base_url=None, now=4.0)
        assert cleared.base_url is None and cleared.name == "renamed"
        assert (await store.secrets(a.id))[0] == Credential(api_key=API_KEY)
        same_name = await store.update(a.id, name="renamed", now=5.0)
        assert same_name.name == "renamed"
    with_store(db_target, body)


def test_outcomes_persist_and_a_new_credential_or_reset_clears_them(db_target: str) -> None:
    async def body(store: AccountStore) -> None:
        a = await store.create(name="a", type=AccountType.API_KEY,
                               credential=Credential(api_key=API_KEY), now=1.0)
        await store.record_outcome(a.id, now=10.0, state=AccountState.OK, cooldown_until=70.0,
                                   consecutive_failures=2, last_error="429 rate limited",
                                   used=True)
        cooling = await store.get(a.id)
        assert (cooling.cooldown_until, cooling.consecutive_failures, cooling.last_error,
                cooling.last_used_at, cooling.updated_at) == (70.0, 2, "429 rate limited",
                                                              10.0, 1.0)
        assert cooling.status(20.0) is AccountStatus.COOLDOWN
        await store.record_outcome(a.id, now=20.0, state=AccountState.INVALID,
                                   cooldown_until=None, consecutive_failures=3,
                                   last_error="401 invalid x-api-key", used=False)
        invalid = await store.get(a.id)
        assert (invalid.state, invalid.last_used_at) == (AccountState.INVALID, 10.0)
        await store.record_outcome(999, now=20.0, state=AccountState.OK, cooldown_until=None,
                                   consecutive_failures=0, last_error=None, used=True)

        fixed = await store.update(a.id, credential=Credential(api_key=OTHER_KEY), now=30.0)
        assert (fixed.state, fixed.cooldown_until, fixed.consecutive_failures,
                fixed.last_error) == (AccountState.OK, None, 0, None)
        assert fixed.credential_hint == "sk-ant-…last"
        assert (await store.secrets(a.id))[0] == Credential(api_key=OTHER_KEY)

        await store.record_outcome(a.id, now=40.0, state=AccountState.EXHAUSTED,
                                   cooldown_until=99.0, consecutive_failures=5,
                                   last_error="credit balance too low", used=True)
        reset = await store.reset(a.id, now=50.0)
        assert (reset.state, reset.cooldown_until, reset.consecutive_failures, reset.last_error,
                reset.updated_at, reset.last_used_at) == (AccountState.OK, None, 0, None, 50.0,
                                                          40.0)
    with_store(db_target, body)


def test_find_by_api_key(db_target: str) -> None:
    async def body(store: AccountStore) -> None:
        await store.create(name="oauth", type=AccountType.OAUTH,
                           credential=Credential(access_token=API_KEY), now=1.0)
        a = await store.create(name="a", type=AccountType.API_KEY,
                               credential=Credential(api_key=API_KEY), now=1.0)
        assert await store.find_by_api_key(API_KEY) == a
        assert await store.find_by_api_key(OTHER_KEY) is None
        assert await store.find_by_api_key(API_KEY[:-1]) is None
    with_store(db_target, body)


def _database_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("k.db")}


def test_the_database_files_never_hold_a_plaintext_credential(tmp_path: Path) -> None:
    secrets = [API_KEY, OTHER_KEY, ACCESS_TOKEN, REFRESH_TOKEN]
    needles = [s.encode() for s in secrets] + [s[7:30].encode() for s in secrets]

    async def main() -> None:
        db = await Database.open(tmp_path / "k.db")
        try:
            store = AccountStore(db, Sealer(KEY))
            a = await store.create(name="plain-name-marker", type=AccountType.API_KEY,
                                   credential=Credential(api_key=API_KEY), now=1.0)
            await store.create(name="o", type=AccountType.OAUTH, now=1.0,
                               credential=Credential(access_token=ACCESS_TOKEN,
                                                     refresh_token=REFRESH_TOKEN))
            await store.update(a.id, credential=Credential(api_key=OTHER_KEY), now=2.0)
            files = _database_files(tmp_path)
            assert files.get("k.db-wal")  # the writes are in the WAL right now: search it too
            assert any(b"plain-name-marker" in content for content in files.values())
            for name, content in files.items():
                for needle in needles:
                    assert needle not in content, (name, needle)
        finally:
            await db.close()
    asyncio.run(main())
    files = _database_files(tmp_path)
    # Usually checkpointed into the main file by the last connection to close; under load a
    # reader may close last and leave it in the WAL. Either way the bytes searched are real.
    assert any(b"plain-name-marker" in content for content in files.values())
    for name, content in files.items():
        for needle in needles:
            assert needle not in content, (name, needle)


def test_a_credential_copied_to_another_row_does_not_open(tmp_path: Path) -> None:
    async def body(store: AccountStore) -> None:
        victim = await store.create(name="victim", type=AccountType.API_KEY,
                                    credential=Credential(api_key=API_KEY), now=1.0)
        thief = await store.create(name="thief", type=AccountType.API_KEY,
                                   credential=Credential(api_key=OTHER_KEY), now=1.0)
        with raw(tmp_path / "k.db") as conn:
            conn.execute("UPDATE accounts SET credential = (SELECT credential FROM accounts "
                         "WHERE id = ?) WHERE id = ?", (victim.id, thief.id))
        with pytest.raises(CryptoError):
            (await store.secrets(thief.id))[0]
        assert (await store.secrets(victim.id))[0] == Credential(api_key=API_KEY)
    with_store(tmp_path / "k.db", body)


def test_a_wrong_key_opens_no_credential(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    async def create(store: AccountStore) -> int:
        account = await store.create(name="a", type=AccountType.API_KEY,
                                     credential=Credential(api_key=API_KEY), now=1.0)
        return account.id
    account_id = with_store(path, create)

    async def open_with_wrong_key(store: AccountStore) -> None:
        assert (await store.get(account_id)).credential_hint == "sk-ant-…tail"
        with pytest.raises(CryptoError):
            (await store.secrets(account_id))[0]
    with_store(path, open_with_wrong_key, key=bytes(32))


def test_check_encryption_key_accepts_the_right_key_and_refuses_another(tmp_path: Path) -> None:
    path = tmp_path / "k.db"

    def key_check() -> bytes:
        with raw(path) as conn:
            (value,) = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
        return bytes(value)

    async def check(key: bytes) -> None:
        db = await Database.open(path)
        try:
            await check_encryption_key(db, Sealer(key))
        finally:
            await db.close()

    asyncio.run(check(KEY))  # first use: seals the marker
    sealed = key_check()
    asyncio.run(check(KEY))  # afterwards: opens it, changes nothing
    assert key_check() == sealed
    with pytest.raises(StoreError) as caught:
        asyncio.run(check(bytes(32)))
    assert str(caught.value) == (
        f"ENCRYPTION_KEY does not open the credentials stored in {path}: start with the key "
        "they were sealed with (nothing was changed)")
    assert key_check() == sealed
    asyncio.run(check(KEY))  # the right key still works after the refusal


def test_a_proxy_url_is_sealed_apart_and_its_change_is_a_new_credential_version(
        tmp_path: Path) -> None:
    url = "socks5h://alice:PROXYSECRET@10.0.0.5:1080"

    async def body(store: AccountStore) -> None:
        account = await store.create(name="a", type=AccountType.API_KEY,
                                     credential=Credential(api_key=API_KEY), now=1.0,
                                     proxy=AccountProxy(url=url, hint="socks5h://alice:…@x"))
        assert account.proxy_hint == "socks5h://alice:…@x"
        assert "PROXYSECRET" not in repr(account) + repr(AccountProxy(url=url, hint="h"))
        assert await store.secrets(account.id) == (Credential(api_key=API_KEY), url)
        with raw(tmp_path / "k.db") as conn:
            (blob,) = conn.execute("SELECT proxy FROM accounts").fetchone()
        assert b"PROXYSECRET" not in bytes(blob)
        cleared = await store.update(account.id, now=2.0, proxy=None)
        assert cleared.proxy_hint is None
        assert cleared.credential_version > account.credential_version
        assert await store.secrets(account.id) == (Credential(api_key=API_KEY), None)
        kept = await store.update(account.id, now=3.0, priority=5)  # UNSET leaves it alone
        assert kept.credential_version == cleared.credential_version
    with_store(tmp_path / "k.db", body)
    assert not any(b"PROXYSECRET" in data for data in _database_files(tmp_path).values())


def test_a_deleted_accounts_id_is_not_given_to_the_next_one(db_target: str) -> None:
    """The newest account, deleted after it served or failed a request, keeps its id: the next
    account (API key or OAuth) must not inherit its request logs, usage and stats."""
    async def body(db: Database) -> list[int]:
        store = AccountStore(db, Sealer(KEY))
        logs = RequestLogStore(db)
        first = await store.create(name="first", type=AccountType.API_KEY,
                                   credential=Credential(api_key=API_KEY), now=1.0)
        gone = await store.create(name="gone", type=AccountType.API_KEY,
                                  credential=Credential(api_key=OTHER_KEY), now=2.0)
        await logs.insert_many([RequestLog(ts=3.0, request_id="r", route="/v1/messages",
                                           status=429, attempts=(
                                               Attempt(gone.id, 429, "rate_limit_error", 1.0),))])
        await logs.insert_many([RequestLog(ts=3.5, request_id="s", route="/v1/messages",
                                           status=200, account_id=gone.id)])
        await store.delete(gone.id, now=4.0)
        added = await store.create(name="added", type=AccountType.API_KEY,
                                   credential=Credential(api_key=API_KEY), now=5.0)
        await store.delete(added.id, now=6.0)  # never used: no trace, its id may come again
        login, _ = await store.save_oauth_login(
            name="login", credential=Credential(access_token=ACCESS_TOKEN,
                                                refresh_token=REFRESH_TOKEN, expires_at=9e9),
            email=None, organization=None, now=7.0)
        return [first.id, gone.id, added.id, login.id]
    first, gone, added, login = with_db(db_target, body)
    assert gone == first + 1 and added == gone + 1 and login == added
