"""The OAuth refresh lease: which process may spend an account's refresh token, and when.

Refresh tokens rotate: the first refresh with a token wins and the token dies, so two
processes refreshing the same login at once cost the loser an `invalid_grant`. The lease is
four columns of the account row. A process claims it with one conditional UPDATE (free, or its
time is up), which works alike on SQLite and PostgreSQL; it then refreshes, and stores the new
tokens and frees the lease in one transaction. Everyone else reads the lease and either waits
for the new tokens or, after a failed refresh, for the backoff to end.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from kestrel.crypto import Sealer
from kestrel.domain import AccountState, AccountType, Credential, NotFound, mask_secret
from kestrel.store.accounts import (
    CLEAR_REFRESH,
    credential_secret,
    open_credential,
    seal_credential,
    touch,
)
from kestrel.store.database import Database
from kestrel.store.session import Session


class Lease(enum.Enum):
    FRESH = "fresh"
    """The stored tokens are already new enough: use them, nothing was claimed."""
    CLAIMED = "claimed"
    """This process holds the lease: refresh now."""
    ELSEWHERE = "elsewhere"
    """Another process holds the lease and is refreshing: its tokens are on their way."""
    BACKOFF = "backoff"
    """A refresh failed lately: nobody tries again before `until`."""
    INVALID = "invalid"
    """The account was marked invalid with these very tokens: only a new login helps."""


@dataclass(frozen=True)
class RefreshClaim:
    lease: Lease
    current: Credential
    """The stored credential, read in the claim's transaction."""
    until: float | None = None
    failures: int = 0
    """Failed refreshes in a row before this claim."""
    message: str | None = None


class RefreshLeases:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def claim(self, account_id: int, *, owner: str, now: float, until: float,
                    needed: Callable[[Credential], bool]) -> RefreshClaim:
        """Read the stored tokens and, if `needed(tokens)` says they must be replaced and the
        lease is free, take it until `until`."""
        def run(conn: Session) -> RefreshClaim:
            row = conn.execute(
                "SELECT credential, state, last_error, refresh_owner, refresh_until, "
                "refresh_failures, refresh_error FROM accounts WHERE id = ?",
                (account_id,)).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} not found")
            blob, state, last_error, holder, held_until, failures, error = row
            current = open_credential(self._sealer, account_id, bytes(blob))
            if not needed(current):
                return RefreshClaim(Lease.FRESH, current)
            if state == AccountState.INVALID.value:
                return RefreshClaim(Lease.INVALID, current, message=last_error)
            claimed = conn.execute(
                "UPDATE accounts SET refresh_owner = ?, refresh_until = ? WHERE id = ? AND "
                "(refresh_until IS NULL OR refresh_until <= ?)",
                (owner, until, account_id, now)).rowcount
            if claimed:
                return RefreshClaim(Lease.CLAIMED, current, until, failures)
            lease = Lease.BACKOFF if holder is None else Lease.ELSEWHERE
            return RefreshClaim(lease, current, held_until, failures, error)
        return await self._db.write(run)

    async def succeeded(self, account_id: int, credential: Credential, *, replaces: str,
                        owner: str, now: float) -> Credential:
        """Store refreshed tokens and free the lease, unless the stored ones changed meanwhile;
        return what is stored now.

        `replaces` is the refresh token the new tokens were obtained with. If the row holds
        another one (the operator logged in again while the refresh was in flight), the newer
        login wins and is returned instead. `updated_at` stays: it records operator changes.
        """
        def run(conn: Session) -> Credential:
            row = conn.execute("SELECT credential FROM accounts WHERE id = ?",
                               (account_id,)).fetchone()
            if row is None:
                raise NotFound(f"account {account_id} not found")
            current = open_credential(self._sealer, account_id, bytes(row[0]))
            if current.refresh_token != replaces:
                self._release(conn, account_id, owner)
                return current
            conn.execute(f"UPDATE accounts SET credential = ?, credential_hint = ?, "
                         f"{CLEAR_REFRESH} WHERE id = ?",
                         (seal_credential(self._sealer, account_id, credential),
                          mask_secret(credential_secret(AccountType.OAUTH, credential)),
                          account_id))
            touch(conn, account_id, now, credential=True)
            return credential
        return await self._db.write(run)

    async def failed(self, account_id: int, *, owner: str, until: float, failures: int,
                     message: str) -> None:
        """A refresh that may work later: keep the lease, ownerless, until the backoff ends."""
        def run(conn: Session) -> None:
            conn.execute("UPDATE accounts SET refresh_owner = NULL, refresh_until = ?, "
                         "refresh_failures = ?, refresh_error = ? WHERE id = ? AND "
                         "refresh_owner = ?", (until, failures, message, account_id, owner))
        await self._db.write(run)

    async def refused(self, account_id: int, *, owner: str, message: str, now: float) -> None:
        """The refresh token is dead: the account is invalid, in the same transaction as the
        lease is freed, so no process spends the dead token again."""
        def run(conn: Session) -> None:
            cursor = conn.execute(
                f"UPDATE accounts SET state = ?, last_error = ?, {CLEAR_REFRESH} "
                "WHERE id = ? AND refresh_owner = ?",
                (AccountState.INVALID.value, message, account_id, owner))
            if cursor.rowcount:
                touch(conn, account_id, now)
        await self._db.write(run)

    async def release(self, account_id: int, *, owner: str) -> None:
        """Give the lease up without a result (no refresh token to spend, or cancelled)."""
        await self._db.write(lambda conn: self._release(conn, account_id, owner))

    @staticmethod
    def _release(conn: Session, account_id: int, owner: str) -> None:
        conn.execute("UPDATE accounts SET refresh_owner = NULL, refresh_until = NULL "
                     "WHERE id = ? AND refresh_owner = ?", (account_id, owner))

