"""Upstream accounts: rows in, `Account` values out, credentials sealed at rest.

A credential is stored as JSON sealed with AES-GCM, its associated data naming the row
(`kestrel:account:<id>:credential`), so a blob copied into another row does not open. Callers
never see a blob: they get `Account` (with only a masked hint) or, when the proxy needs to send a
request, the opened `Credential`.

`usage_windows` is JSON: `{"observed_at", "status", "reset_at", "representative_claim",
"windows": [{"name", "status", "utilization", "reset_at"}, ...]}`, times in epoch seconds;
`rate_limits` likewise: `{"observed_at", "limits": [[name, limit, remaining, reset_at], ...]}`.
"""

from __future__ import annotations

import builtins
import dataclasses
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from kestrel.crypto import Sealer
from kestrel.domain import (
    UNSET,
    Account,
    AccountState,
    AccountType,
    Conflict,
    Credential,
    Headroom,
    NotFound,
    RateLimits,
    Unset,
    UsageWindow,
    UsageWindows,
    ValidationError,
    mask_secret,
)
from kestrel.store.changes import ChangeKind, announce, latest_change
from kestrel.store.database import Database
from kestrel.store.session import Session

_COLUMNS = ("id, name, type, base_url, priority, enabled, state, cooldown_until, "
            "consecutive_failures, last_error, last_used_at, created_at, updated_at, "
            "credential_hint, email, organization, usage_windows, version, credential_version, "
            "proxy_hint, rate_limits")


def _account(row: tuple[Any, ...]) -> Account:
    (id_, name, type_, base_url, priority, enabled, state, cooldown_until, failures,
     last_error, last_used_at, created_at, updated_at, hint, email, organization,
     usage, version, credential_version, proxy_hint, rate_limits) = row
    return Account(id=id_, name=name, type=AccountType(type_), base_url=base_url,
                   priority=priority, enabled=bool(enabled), state=AccountState(state),
                   cooldown_until=cooldown_until, consecutive_failures=failures,
                   last_error=last_error, last_used_at=last_used_at, created_at=created_at,
                   updated_at=updated_at, credential_hint=hint, email=email,
                   organization=organization, usage_windows=usage_from_json(usage),
                   version=version, credential_version=credential_version,
                   proxy_hint=proxy_hint, rate_limits=rate_limits_from_json(rate_limits))


def rate_limits_to_json(limits: RateLimits) -> str:
    return json.dumps({"observed_at": limits.observed_at,
                       "limits": [[h.name, h.limit, h.remaining, h.reset_at]
                                  for h in limits.limits]})


def rate_limits_from_json(text: str | None) -> RateLimits | None:
    """What `rate_limits_to_json` wrote; None for nothing or anything else."""
    if not text:
        return None
    try:
        stored: Any = json.loads(text)
        return RateLimits(observed_at=float(stored["observed_at"]),
                          limits=tuple(Headroom(str(name), limit, remaining, reset_at)
                                       for name, limit, remaining, reset_at in stored["limits"]))
    except (ValueError, KeyError, TypeError):
        return None


def usage_to_json(usage: UsageWindows) -> str:
    return json.dumps(dataclasses.asdict(usage), separators=(",", ":"))


def usage_from_json(text: str | None) -> UsageWindows | None:
    """The stored snapshot, or None when there is none or it cannot be read: usage windows are
    a display and a hint for selection, never worth failing a listing over."""
    if not text:
        return None
    try:
        data = json.loads(text)
        windows = tuple(UsageWindow(**w) for w in data.pop("windows", ()))
        return UsageWindows(**data, windows=windows)
    except (ValueError, TypeError, AttributeError):
        return None


def _aad(account_id: int, what: str = "credential") -> bytes:
    return f"kestrel:account:{account_id}:{what}".encode()


def credential_secret(type_: AccountType, credential: Credential) -> str:
    """The secret that identifies the credential: what the hint is made from."""
    secret = credential.api_key if type_ is AccountType.API_KEY else credential.access_token
    if not secret:
        what = "an api_key" if type_ is AccountType.API_KEY else "an access_token"
        raise ValidationError(f"a {type_.value} account needs {what}", field="credential")
    return secret


def _fetch(conn: Session, account_id: int) -> Account:
    row = conn.execute(f"SELECT {_COLUMNS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return _account(row)


def touch(conn: Session, account_id: int, now: float, *,
          credential: bool = False) -> None:
    """Announce a change of the row (inside the caller's transaction) and stamp it with the
    change's id; `credential`: the credential changed too."""
    version = announce(conn, ChangeKind.ACCOUNT, account_id, now)
    conn.execute("UPDATE accounts SET version = ?, credential_version = CASE WHEN ? THEN ? "
                 "ELSE credential_version END WHERE id = ?",
                 (version, credential, version, account_id))


def seal_credential(sealer: Sealer, account_id: int, credential: Credential) -> bytes:
    plaintext = json.dumps(dataclasses.asdict(credential), separators=(",", ":")).encode()
    return sealer.seal(plaintext, aad=_aad(account_id))


def open_credential(sealer: Sealer, account_id: int, blob: bytes) -> Credential:
    data = json.loads(sealer.open(blob, aad=_aad(account_id)))
    return Credential(**{f.name: data.get(f.name) for f in dataclasses.fields(Credential)})


# A new credential starts with a clean slate: no refresh lease, no failed refreshes.
CLEAR_REFRESH = ("refresh_owner = NULL, refresh_until = NULL, refresh_failures = 0, "
                 "refresh_error = NULL")


@dataclass(frozen=True)
class AccountProxy:
    """An account's own proxy as stored: the URL, sealed (it may hold a password), and the hint
    shown instead of it."""

    url: str = field(repr=False)
    hint: str


def _unused_id(conn: Session) -> int:
    """An id no account had before, as far as any trace of one goes. The database alone would
    give a deleted newest account's id to the next one (SQLite's rowid is the highest plus
    one), and that account would inherit the other's request logs, usage and stats."""
    used = [conn.execute(f"SELECT MAX({column}) FROM {table}").fetchone()[0]
            for table, column in (("accounts", "id"), ("request_logs", "account_id"),
                                  ("usage_days", "account_id"))]
    return max((value for value in used if value is not None), default=0) + 1


def _check_name_free(conn: Session, name: str, account_id: int | None) -> None:
    # Checked inside the write transaction (which holds the write lock), so it cannot race.
    row = conn.execute("SELECT id FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] != account_id:
        raise Conflict(f"an account named {name!r} exists", field="name")


class AccountStore:
    """The accounts table. Every method is one transaction, so a reader never sees a row
    between its insert and its sealed credential, or half of an update."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    def _seal(self, account_id: int, credential: Credential) -> bytes:
        return seal_credential(self._sealer, account_id, credential)

    def _open(self, account_id: int, blob: bytes) -> Credential:
        return open_credential(self._sealer, account_id, blob)

    async def list(self) -> builtins.list[Account]:
        """Every account, in the order the pool prefers them: priority high to low, then age."""
        return (await self.snapshot())[0]

    async def snapshot(self) -> tuple[builtins.list[Account], int]:
        """Every account (as `list`), and the newest change they include: an account missing
        from the list but with a higher `version` was created after this snapshot."""
        def run(conn: Session) -> tuple[builtins.list[Account], int]:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM accounts ORDER BY priority DESC, id")
            return [_account(row) for row in rows], latest_change(conn)
        return await self._db.read(run)

    async def get(self, account_id: int) -> Account:
        return await self._db.read(lambda conn: _fetch(conn, account_id))

    async def create(self, *, name: str, type: AccountType, credential: Credential,
                     base_url: str | None = None, priority: int = 0, enabled: bool = True,
                     proxy: AccountProxy | None = None, now: float) -> Account:
        """Insert the row, then seal with its id: the id is part of the seal's associated data,
        and both steps share one transaction so no row ever exists without its credential."""
        hint = mask_secret(credential_secret(type, credential))

        def run(conn: Session) -> Account:
            _check_name_free(conn, name, None)
            account_id = _unused_id(conn)
            conn.execute(
                "INSERT INTO accounts (id, name, type, credential, credential_hint, base_url, "
                "priority, enabled, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account_id, name, type.value, b"", hint, base_url, priority, int(enabled), now,
                 now))
            conn.execute("UPDATE accounts SET credential = ?, proxy = ?, proxy_hint = ? "
                         "WHERE id = ?", (self._seal(account_id, credential),
                                          *self._proxy_columns(account_id, proxy), account_id))
            touch(conn, account_id, now, credential=True)
            return _fetch(conn, account_id)
        return await self._db.write(run)

    def _proxy_columns(self, account_id: int, proxy: AccountProxy | None
                       ) -> tuple[bytes | None, str | None]:
        if proxy is None:
            return None, None
        return (self._sealer.seal(proxy.url.encode(), aad=_aad(account_id, "proxy")),
                proxy.hint)

    async def update(self, account_id: int, *, now: float, name: str | None = None,
                     credential: Credential | None = None,
                     base_url: str | None | Unset = UNSET, priority: int | None = None,
                     enabled: bool | None = None,
                     proxy: AccountProxy | None | Unset = UNSET) -> Account:
        """Change only the given fields.

        A new credential, or a new proxy, also clears the account's failure state: an operator
        who fixes a key or a route expects the pool to try it again at once, not after the old
        cooldown.
        """
        def run(conn: Session) -> Account:
            current = _fetch(conn, account_id)
            changes: dict[str, object] = {"updated_at": now}
            if name is not None:
                _check_name_free(conn, name, account_id)
                changes["name"] = name
            if not isinstance(base_url, Unset):
                changes["base_url"] = base_url
            if priority is not None:
                changes["priority"] = priority
            if enabled is not None:
                changes["enabled"] = int(enabled)
            if credential is not None:
                changes.update(
                    credential=self._seal(account_id, credential),
                    credential_hint=mask_secret(credential_secret(current.type, credential)))
            if not isinstance(proxy, Unset):
                changes["proxy"], changes["proxy_hint"] = self._proxy_columns(account_id, proxy)
            secrets_changed = credential is not None or not isinstance(proxy, Unset)
            if secrets_changed:
                changes.update(state=AccountState.OK.value, cooldown_until=None,
                               consecutive_failures=0, last_error=None)
            # Column names come from the fixed keys above, never from the caller.
            assignments = ", ".join(f"{column} = ?" for column in changes)
            if credential is not None:
                assignments += f", {CLEAR_REFRESH}"
            conn.execute(f"UPDATE accounts SET {assignments} WHERE id = ?",
                         (*changes.values(), account_id))
            # The opened proxy is cached with the credential: a new one is a new version.
            touch(conn, account_id, now, credential=secrets_changed)
            return _fetch(conn, account_id)
        return await self._db.write(run)

    async def delete(self, account_id: int, *, now: float) -> None:
        def run(conn: Session) -> None:
            if conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,)).rowcount == 0:
                raise NotFound(f"account {account_id} not found")
            announce(conn, ChangeKind.ACCOUNT, account_id, now)
        await self._db.write(run)

    async def reset(self, account_id: int, *, now: float) -> Account:
        """Forget the failures: the operator says the account is fine again."""
        def run(conn: Session) -> Account:
            cursor = conn.execute(
                "UPDATE accounts SET state = ?, cooldown_until = NULL, consecutive_failures = 0,"
                " last_error = NULL, updated_at = ? WHERE id = ?",
                (AccountState.OK.value, now, account_id))
            if cursor.rowcount == 0:
                raise NotFound(f"account {account_id} not found")
            touch(conn, account_id, now)
            return _fetch(conn, account_id)
        return await self._db.write(run)

    async def record_outcome(self, account_id: int, *, now: float, state: AccountState,
                             cooldown_until: float | None, consecutive_failures: int,
                             last_error: str | None, used: bool) -> Account | None:
        """Persist what the proxy learnt from an upstream answer; the row as it is now.

        `updated_at` stays: it records operator changes, not traffic. A row deleted while its
        request was in flight is ignored (None), since the outcome no longer matters to anyone.
        """
        def run(conn: Session) -> Account | None:
            cursor = conn.execute(
                "UPDATE accounts SET state = ?, cooldown_until = ?, consecutive_failures = ?,"
                " last_error = ?, last_used_at = CASE WHEN ? THEN ? ELSE last_used_at END"
                " WHERE id = ?",
                (state.value, cooldown_until, consecutive_failures, last_error, used, now,
                 account_id))
            if cursor.rowcount == 0:
                return None
            touch(conn, account_id, now)
            return _fetch(conn, account_id)
        return await self._db.write(run)

    async def save_oauth_login(self, *, name: str, credential: Credential, email: str | None,
                               organization: str | None, now: float) -> tuple[Account, bool]:
        """Store the tokens of a finished OAuth login: `(account, created)`.

        Logging in again under an existing OAuth account's name replaces its tokens (and, like
        any new credential, clears its failure state): that is how an operator reconnects an
        account whose refresh token died. An API-key account of that name is never overwritten.
        """
        hint = mask_secret(credential_secret(AccountType.OAUTH, credential))

        def run(conn: Session) -> tuple[Account, bool]:
            row = conn.execute("SELECT id, type FROM accounts WHERE name = ?", (name,)).fetchone()
            if row is not None and row[1] != AccountType.OAUTH.value:
                raise Conflict(f"an API-key account named {name!r} exists; choose another name",
                               field="name")
            if row is None:
                account_id = _unused_id(conn)
                conn.execute(
                    "INSERT INTO accounts (id, name, type, credential, credential_hint, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (account_id, name, AccountType.OAUTH.value, b"", hint, now, now))
                created = True
            else:
                account_id, created = row[0], False
            conn.execute(
                "UPDATE accounts SET credential = ?, credential_hint = ?, email = ?, "
                "organization = ?, state = ?, cooldown_until = NULL, consecutive_failures = 0, "
                f"last_error = NULL, updated_at = ?, {CLEAR_REFRESH} WHERE id = ?",
                (self._seal(account_id, credential), hint, email, organization,
                 AccountState.OK.value, now, account_id))
            touch(conn, account_id, now, credential=True)
            return _fetch(conn, account_id), created
        return await self._db.write(run)

    async def record_usage(self, account_id: int, usage: UsageWindows, *,
                           announce: bool) -> Account | None:
        """Keep the latest usage windows; a row deleted meanwhile is simply not there (None).

        `announce`: the change matters to other processes (the windows' status or the
        account's place in the rotation changed), so it goes on the change feed and the row
        is returned; a routine update is only stored (None).
        """
        def run(conn: Session) -> Account | None:
            cursor = conn.execute("UPDATE accounts SET usage_windows = ? WHERE id = ?",
                                  (usage_to_json(usage), account_id))
            if not announce or cursor.rowcount == 0:
                return None
            touch(conn, account_id, usage.observed_at)
            return _fetch(conn, account_id)
        return await self._db.write(run)

    async def record_rate_limits(self, account_id: int, limits: RateLimits) -> None:
        """Keep the latest API rate-limit headroom. Not on the change feed: it is shown, never
        acted on, and every answer brings a newer one."""
        def run(conn: Session) -> None:
            conn.execute("UPDATE accounts SET rate_limits = ? WHERE id = ?",
                         (rate_limits_to_json(limits), account_id))
        await self._db.write(run)

    async def secrets(self, account_id: int) -> tuple[Credential, str | None]:
        """The opened credential and proxy URL (None: the account has no proxy of its own);
        `CryptoError` if a blob does not open with our key."""
        def run(conn: Session) -> tuple[bytes, bytes | None]:
            row = conn.execute("SELECT credential, proxy FROM accounts WHERE id = ?",
                               (account_id,)).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} not found")
            return bytes(row[0]), None if row[1] is None else bytes(row[1])
        credential, proxy = await self._db.read(run)
        return (self._open(account_id, credential),
                None if proxy is None
                else self._sealer.open(proxy, aad=_aad(account_id, "proxy")).decode())

    async def find_by_api_key(self, api_key: str) -> Account | None:
        """The api_key account holding exactly this key, if any.

        Seals are randomised, so the key cannot be looked up by value: each credential is opened
        and compared in constant time. Fine for the handful of accounts a pool has.
        """
        presented = api_key.encode()

        def run(conn: Session) -> Account | None:
            rows = conn.execute("SELECT id, credential FROM accounts WHERE type = ? ORDER BY id",
                                (AccountType.API_KEY.value,)).fetchall()
            for account_id, blob in rows:
                stored = self._open(account_id, bytes(blob)).api_key
                if stored is not None and hmac.compare_digest(stored.encode(), presented):
                    return _fetch(conn, account_id)
            return None
        return await self._db.read(run)
