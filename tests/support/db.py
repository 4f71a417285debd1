"""Opening a real database in a test: through `Database`, or raw to look under the hood."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kestrel.store.database import Database

T = TypeVar("T")


def with_db(path: Path, body: Callable[[Database], Awaitable[T]]) -> T:
    """Run `body` against a freshly opened Database on its own event loop, then close it."""
    async def main() -> T:
        db = await Database.open(path)
        try:
            return await body(db)
        finally:
            await db.close()
    return asyncio.run(main())


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection for looking under the hood; sqlite3's own `with` does not close."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
