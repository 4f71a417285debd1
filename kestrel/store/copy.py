"""Copying a whole deployment into another database: `kestrel migrate-to postgresql://…`.

Rows are copied as they are stored, ids included: a credential stays sealed under the same
ENCRYPTION_KEY (its seal names the account's id), a client key stays a hash, and the change ids
the account rows carry as versions stay ahead of every change made later. Both databases are
first brought to this Kestrel's schema, so the tables and columns are the same on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kestrel.domain import KestrelError
from kestrel.store.database import Database
from kestrel.store.session import Session

# Parents before children, in case a future schema adds foreign keys between them. The schema
# version is each database's own, written by its migrations.
# key_in_flight is left out: it describes the source's running processes, not the deployment.
TABLES = ("meta", "accounts", "api_keys", "oauth_states", "changes", "admin_failures",
          "request_logs", "usage_days", "key_minutes")
# Tables whose `id` the database hands out: copied in id order, in slices, and the target's
# counter moved past the copied ids.
WITH_IDS = ("accounts", "api_keys", "changes", "request_logs")
ROWS_PER_SLICE = 2_000


class TargetNotEmpty(KestrelError):
    """The target already holds a deployment: copying over it needs --force."""

    status = 409
    type = "conflict_error"


def _counts(session: Session) -> dict[str, int]:
    return {table: int(session.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in TABLES}


def _slice(table: str, after: int | None) -> Callable[[Session], tuple[list[str], list[Any]]]:
    """The next slice of `table` (after id `after`), or all of a table without ids."""
    def read(session: Session) -> tuple[list[str], list[Any]]:
        if after is None:
            rows = session.execute(f"SELECT * FROM {table}")
        else:
            rows = session.execute(f"SELECT * FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                   (after, ROWS_PER_SLICE))
        columns = [column[0] for column in rows.description or ()]
        return columns, [tuple(row) for row in rows]
    return read


async def copy_database(source: Database, target: Database, *, force: bool,
                        progress: Callable[[str, int], None] = lambda table, rows: None,
                        ) -> dict[str, int]:
    """Copy every row of `source` into `target`; return the rows per table, verified equal on
    both sides. A target that holds rows is refused unless `force`, which empties it first (in
    the same transaction as the first rows copied, so a failure leaves it as it was)."""
    if not force and any((await target.read(_counts)).values()):
        raise TargetNotEmpty(f"{target.where} already holds a Kestrel deployment; use --force "
                             "to replace it")
    emptied = not force
    for table in TABLES:
        after: int | None = 0 if table in WITH_IDS else None
        copied = 0
        while True:
            columns, rows = await source.read(_slice(table, after))
            if emptied and not rows:
                break

            def write(session: Session, columns: list[str] = columns, rows: list[Any] = rows,
                      table: str = table, empty_first: bool = not emptied) -> None:
                if empty_first:
                    for name in reversed(TABLES):
                        session.execute(f"DELETE FROM {name}")
                if rows:
                    session.insert_rows(table, columns, rows)
                    if table in WITH_IDS:
                        session.ids_copied(table)
            await target.write(write)
            emptied = True
            copied += len(rows)
            progress(table, copied)
            if after is None or len(rows) < ROWS_PER_SLICE:
                break
            after = rows[-1][columns.index("id")]
    wanted, got = await source.read(_counts), await target.read(_counts)
    if wanted != got:
        different = ", ".join(f"{t}: {wanted[t]} in the source, {got[t]} copied"
                              for t in TABLES if wanted[t] != got[t])
        raise KestrelError(f"the copy does not match ({different}); was a Kestrel still "
                           "writing to the source? Stop it and run again with --force")
    return got
