"""Logins in progress: the `state` of each OAuth authorization request and its PKCE verifier.

A row is written when a login starts and consumed, exactly once, when its callback or pasted
code comes back. Consuming reads and marks the row in one write transaction, so two callbacks
racing with the same `state` cannot both get the verifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kestrel.crypto import Sealer
from kestrel.domain import ClientError
from kestrel.store.database import Database
from kestrel.store.session import Session

# Used and expired rows are kept this long after they expire, so that a replayed `state` is
# reported as "already used" rather than "unknown"; then they are purged.
KEEP_SPENT_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class PendingLogin:
    """What a consumed `state` hands back to finish its login."""

    state: str
    account_name: str
    redirect_uri: str
    verifier: str = field(repr=False)
    return_to: str | None = None
    """The dashboard that started a redirect login, to send the operator back to."""


class LoginStateError(ClientError):
    """The `state` of a callback or paste is unknown, expired, or already used."""


def _aad(state: str) -> bytes:
    return f"kestrel:oauth_state:{state}".encode()


class OAuthStateStore:
    def __init__(self, db: Database, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    async def create(self, *, state: str, verifier: str, account_name: str, redirect_uri: str,
                     now: float, ttl: float, return_to: str | None = None) -> None:
        sealed = self._sealer.seal(verifier.encode(), aad=_aad(state))

        def run(conn: Session) -> None:
            conn.execute("DELETE FROM oauth_states WHERE expires_at < ?",
                         (now - KEEP_SPENT_SECONDS,))
            conn.execute(
                "INSERT INTO oauth_states (state, verifier, account_name, redirect_uri, "
                "created_at, expires_at, return_to) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (state, sealed, account_name, redirect_uri, now, now + ttl, return_to))
        await self._db.write(run)

    async def consume(self, state: str, *, now: float) -> PendingLogin:
        """Mark the login used and return it; `LoginStateError` (400) saying which of unknown,
        expired or used it was. The verifier is wiped from the row as it is handed out."""
        def run(conn: Session) -> tuple[str, str, bytes, str | None]:
            # Read and mark inside one write transaction: it holds the write lock, so no other
            # consumer can read the row between the two statements.
            row = conn.execute("SELECT account_name, redirect_uri, verifier, expires_at, used_at, "
                               "return_to FROM oauth_states WHERE state = ?",
                               (state,)).fetchone()
            if row is None:
                raise LoginStateError("unknown login state: start the login again", field="state")
            name, redirect_uri, sealed, expires_at, used_at, return_to = row
            if used_at is not None:
                raise LoginStateError("this login was already used: start the login again",
                                      field="state")
            if expires_at <= now:
                raise LoginStateError("this login expired: start the login again", field="state")
            conn.execute("UPDATE oauth_states SET used_at = ?, verifier = ? WHERE state = ?",
                         (now, b"", state))
            return name, redirect_uri, bytes(sealed), return_to
        name, redirect_uri, sealed, return_to = await self._db.write(run)
        verifier = self._sealer.open(sealed, aad=_aad(state)).decode()
        return PendingLogin(state=state, account_name=name, redirect_uri=redirect_uri,
                            verifier=verifier, return_to=return_to)
