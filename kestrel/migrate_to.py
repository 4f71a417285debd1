"""`kestrel migrate-to [URL]`: move a one-box deployment (SQLite) into PostgreSQL.

Everything is copied as stored (see `kestrel/store/copy.py`), then counted on both sides. The
instances that will use the copy need the ENCRYPTION_KEY and ADMIN_KEY the box used: this
command says where they are, never what they are.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from kestrel.config import DEFAULT_DB_PATH, secrets_path_for
from kestrel.database_url import is_postgres_url
from kestrel.domain import KestrelError, StoreError
from kestrel.store.copy import copy_database
from kestrel.store.database import Database

EXIT_REFUSED = 1
EXIT_USAGE = 2


def migrate_to(url: str | None, db: str | None, *, force: bool,
               environ: Mapping[str, str] = os.environ) -> int:
    """Copy the SQLite database at `db` (else DB_PATH, else kestrel.db) into the PostgreSQL
    database `url` (else DATABASE_URL); the process's exit status."""
    target = (url or environ.get("DATABASE_URL", "")).strip()
    if not is_postgres_url(target):
        print("kestrel: migrate-to needs a postgresql:// URL (as its argument, or in "
              "DATABASE_URL)", file=sys.stderr)
        return EXIT_USAGE
    source = Path(db or environ.get("DB_PATH", "").strip() or DEFAULT_DB_PATH).expanduser()
    if not source.is_file():
        print(f"kestrel: {source}: no such database (pass --db, or set DB_PATH)",
              file=sys.stderr)
        return EXIT_REFUSED

    def progress(table: str, rows: int) -> None:
        print(f"\r{table}: {rows} rows", end="", file=sys.stderr, flush=True)

    async def copy() -> tuple[str, dict[str, int]]:
        from_db = await Database.open(source)
        try:
            to_db = await Database.open(target)
            try:
                return to_db.where, await copy_database(from_db, to_db, force=force,
                                                        progress=progress)
            finally:
                await to_db.close()
        finally:
            await from_db.close()

    try:
        where, counts = asyncio.run(copy())
    except (StoreError, KestrelError) as exc:
        print(f"\nkestrel: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print("\r", end="", file=sys.stderr)
    width = max(len(table) for table in counts)
    for table, rows in counts.items():
        print(f"{table:<{width}}  {rows:>9}")
    print(f"Copied {source} to {where}; every table counted the same on both sides.")
    secrets = secrets_path_for(source)
    where_keys = (f"the ENCRYPTION_KEY and ADMIN_KEY in {secrets}" if secrets.is_file() else
                  "the ENCRYPTION_KEY and ADMIN_KEY this box was started with")
    print(f"Start every instance with DATABASE_URL set and {where_keys}.")
    return 0
