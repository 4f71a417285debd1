"""OAuth storage on a real database file: single-use login states, stored logins, rotated tokens,
usage windows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kestrel.crypto import Sealer
from kestrel.domain import (
    AccountState,
    AccountType,
    Conflict,
    Credential,
    UsageWindow,
    UsageWindows,
)
from kestrel.store.accounts import AccountStore
from kestrel.store.database import Database
from kestrel.store.oauth import KEEP_SPENT_SECONDS, LoginStateError, OAuthStateStore
from kestrel.store.oauth_refresh import Lease, RefreshLeases

from support.db import raw, with_db

KEY = bytes(range(32))
VERIFIER = "verifier-" + "V3r" * 12
ACCESS = "sk-ant-oat01-" + "Ac9" * 20
REFRESH = "sk-ant-ort01-" + "Rf2" * 20


def test_a_login_state_is_consumed_once_and_refused_when_expired_or_unknown(
        tmp_path: Path) -> None:
    async def body(db: Database) -> None:
        states = OAuthStateStore(db, Sealer(KEY))
        for state in ("s1", "s2"):
            await states.create(state=state, verifier=VERIFIER, account_name="work",
                                redirect_uri="http://cb", now=100.0, ttl=600.0)
        pending = await states.consume("s1", now=699.0)
        assert (pending.account_name, pending.redirect_uri, pending.verifier) == (
            "work", "http://cb", VERIFIER)
        assert VERIFIER not in repr(pending)
        for state, now, says in (("s1", 200.0, "already used"), ("s2", 700.0, "expired"),
                                 ("nope", 200.0, "unknown")):
            with pytest.raises(LoginStateError) as raised:
                await states.consume(state, now=now)
            assert says in raised.value.message and raised.value.status == 400
        # two callbacks racing with one state: exactly one gets the verifier
        await states.create(state="s3", verifier=VERIFIER, account_name="work",
                            redirect_uri="http://cb", now=100.0, ttl=600.0)
        results = await asyncio.gather(*(states.consume("s3", now=101.0) for _ in range(10)),
                                       return_exceptions=True)
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        # spent rows go after a day, when the next login starts
        await states.create(state="s4", verifier=VERIFIER, account_name="w",
                            redirect_uri="http://cb", now=700.0 + KEEP_SPENT_SECONDS + 1,
                            ttl=600.0)
    with_db(tmp_path / "k.db", body)
    with raw(tmp_path / "k.db") as conn:
        rows = conn.execute("SELECT state, verifier FROM oauth_states ORDER BY state").fetchall()
    assert [r[0] for r in rows] == ["s4"]
    assert VERIFIER.encode() not in rows[0][1]  # sealed at rest
    assert all(bytes(r[1]) for r in rows)


def test_logins_create_then_reconnect_and_never_take_an_api_key_name(db_target: str) -> None:
    async def body(db: Database) -> None:
        store = AccountStore(db, Sealer(KEY))
        first = Credential(access_token=ACCESS, refresh_token=REFRESH, expires_at=900.0,
                           obtained_at=100.0)
        account, created = await store.save_oauth_login(
            name="sub", credential=first, email="me@example.test", organization="Acme",
            now=100.0)
        assert created and account.type is AccountType.OAUTH
        assert (account.email, account.organization) == ("me@example.test", "Acme")
        assert account.credential_hint == "sk-ant-…" + ACCESS[-4:]
        assert (await store.secrets(account.id))[0] == first
        await store.record_outcome(account.id, now=101.0, state=AccountState.INVALID,
                                   cooldown_until=None, consecutive_failures=3,
                                   last_error="refresh token refused", used=False)
        again, created = await store.save_oauth_login(
            name="sub", credential=Credential(access_token=ACCESS[::-1]), email=None,
            organization=None, now=200.0)
        assert not created and again.id == account.id
        assert (again.state, again.consecutive_failures, again.last_error) == (
            AccountState.OK, 0, None)
        await store.create(name="key", type=AccountType.API_KEY,
                           credential=Credential(api_key="sk-ant-api03-0123456789"), now=1.0)
        with pytest.raises(Conflict):
            await store.save_oauth_login(name="key", credential=first, email=None,
                                         organization=None, now=300.0)
        assert (await store.secrets((await store.list())[-1].id))[0].api_key
    with_db(db_target, body)


def test_refreshed_tokens_replace_only_the_login_they_came_from(db_target: str) -> None:
    async def body(db: Database) -> None:
        store = AccountStore(db, Sealer(KEY))
        leases = RefreshLeases(db, Sealer(KEY))
        old = Credential(access_token=ACCESS, refresh_token=REFRESH)
        account, _ = await store.save_oauth_login(name="sub", credential=old, email=None,
                                                  organization=None, now=1.0)
        claim = await leases.claim(account.id, owner="p1", now=2.0, until=50.0,
                                   needed=lambda _: True)
        assert (claim.lease, claim.current) == (Lease.CLAIMED, old)
        # held: another process neither claims nor sees a backoff, but a refresh in flight
        other = await leases.claim(account.id, owner="p2", now=3.0, until=51.0,
                                   needed=lambda _: True)
        assert (other.lease, other.until) == (Lease.ELSEWHERE, 50.0)
        fresh = Credential(access_token=ACCESS + "2", refresh_token=REFRESH + "2")
        assert await leases.succeeded(account.id, fresh, replaces=REFRESH, owner="p1",
                                      now=4.0) == fresh
        assert (await store.secrets(account.id))[0] == fresh
        stored = await store.get(account.id)
        assert stored.updated_at == 1.0  # not an operator change
        # a new credential version, announced on the feed; the lease is free again
        assert stored.credential_version == stored.version > account.credential_version
        assert (await leases.claim(account.id, owner="p2", now=5.0, until=55.0,
                                   needed=lambda _: True)).lease is Lease.CLAIMED
        # a refresh that started before a new login must not overwrite that login
        stale = Credential(access_token=ACCESS + "3", refresh_token=REFRESH + "3")
        assert await leases.succeeded(account.id, stale, replaces=REFRESH, owner="p2",
                                      now=6.0) == fresh
        assert (await store.secrets(account.id))[0] == fresh
        assert (await leases.claim(account.id, owner="p3", now=7.0, until=57.0,
                                   needed=lambda _: True)).lease is Lease.CLAIMED
    with_db(db_target, body)


def test_usage_windows_round_trip_and_bad_json_reads_as_none(tmp_path: Path) -> None:
    usage = UsageWindows(observed_at=5.0, status="allowed", reset_at=9.0,
                         representative_claim="five_hour",
                         windows=(UsageWindow("5h", "allowed", 0.5, 9.0), UsageWindow("7d")))

    async def write(db: Database) -> int:
        store = AccountStore(db, Sealer(KEY))
        account, _ = await store.save_oauth_login(
            name="sub", credential=Credential(access_token=ACCESS), email=None,
            organization=None, now=1.0)
        await store.record_usage(account.id, usage, announce=False)
        assert (await store.get(account.id)).usage_windows == usage
        return account.id
    account_id = with_db(tmp_path / "k.db", write)
    with raw(tmp_path / "k.db") as conn:
        conn.execute("UPDATE accounts SET usage_windows = '{\"windows\": 3}' WHERE id = ?",
                     (account_id,))

    async def read(db: Database) -> None:
        assert (await AccountStore(db, Sealer(KEY)).get(account_id)).usage_windows is None
    with_db(tmp_path / "k.db", read)
