"""Opening a real database in a test: through `Database`, or raw to look under the hood; and
making its files unwritable under a running server."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kestrel.store.database import Database

T = TypeVar("T")


def with_db(path: Path | str, body: Callable[[Database], Awaitable[T]]) -> T:
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


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The files read-only for every process, root included, even through descriptors opened
    before (`chattr +i`: ext4 refuses any write to an immutable file), until the block ends.

    This is what a database turning read-only under a running server looks like to SQLite:
    its writes fail with an I/O error. `chmod` would not do: root ignores it, and any process
    keeps writing through the descriptors it already holds, as SQLite does.
    """
    names = [str(p) for p in paths]
    subprocess.run(["chattr", "+i", *names], check=True, capture_output=True)
    try:
        for path in paths:
            try:
                path.open("r+b").close()
            except PermissionError:
                continue
            raise AssertionError(f"{path} is still writable")
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=True, capture_output=True)
