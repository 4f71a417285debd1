"""Facts about the database itself, kept in the `meta` table.

The key check exists because a wrong ENCRYPTION_KEY is otherwise discovered late and badly: the
server starts, then every request fails when an account's credential does not open, or worse,
an operator re-enters credentials under the new key and the old ones become unrecoverable. A
sealed marker, opened at start, turns that into one clear refusal before anything is touched.
"""

from __future__ import annotations

from kestrel.crypto import CryptoError, Sealer
from kestrel.domain import StoreError
from kestrel.store.database import Database
from kestrel.store.session import Session

KEY_CHECK = "key_check"
_MARKER = b"kestrel encryption key check"
_AAD = b"kestrel:meta:key_check"


async def check_encryption_key(db: Database, sealer: Sealer) -> None:
    """Seal the marker on first use; afterwards prove that `sealer` opens it.

    Runs as one write transaction, so two processes starting at once cannot both seal a marker.
    On failure nothing is written: the stored marker keeps matching the right key.
    """
    def run(conn: Session) -> None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (KEY_CHECK,)).fetchone()
        if row is None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                         (KEY_CHECK, sealer.seal(_MARKER, aad=_AAD)))
            return
        try:
            opens = sealer.open(bytes(row[0]), aad=_AAD) == _MARKER
        except CryptoError:
            opens = False
        if not opens:
            raise StoreError(f"ENCRYPTION_KEY does not open the credentials stored in {db.where}: "
                             "start with the key they were sealed with (nothing was changed)")
    await db.write(run)
