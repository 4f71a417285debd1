"""Wrong admin keys per client address, shared by every process on the database.

The lock-out must count failures from all processes: with N workers counting apart, an
attacker would get N times the attempts. A failure is one small write; an address already
locked out is refused before it writes anything, so one address costs at most the lock-out's
limit in rows per window, and rows older than the window go as new ones arrive.
"""

from __future__ import annotations

from kestrel.store.database import Database
from kestrel.store.session import Session


class AdminFailureStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def since(self, address: str, since: float) -> list[float]:
        """When `address` presented a wrong admin key after `since`, oldest first."""
        def run(conn: Session) -> list[float]:
            rows = conn.execute("SELECT at FROM admin_failures WHERE address = ? AND at > ? "
                                "ORDER BY at", (address, since))
            return [at for (at,) in rows]
        return await self._db.read(run)

    async def record(self, address: str, now: float, *, forget_before: float) -> None:
        def run(conn: Session) -> None:
            conn.execute("DELETE FROM admin_failures WHERE at <= ?", (forget_before,))
            conn.execute("INSERT INTO admin_failures (address, at) VALUES (?, ?)",
                         (address, now))
        await self._db.write(run)
