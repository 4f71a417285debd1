"""The seam between the repositories and a database engine: what a repository's function gets.

Repositories hand `Database.read`/`write` a plain function of a `Session` and write their SQL
once, in the dialect both engines speak: `?` placeholders, standard `UPDATE … WHERE` instead of
SQLite's two-argument `max()`, booleans passed as Python `bool`. What cannot be said the same way
on both is a method here, with one implementation per engine (`sqlite_engine.py`,
`postgres_engine.py`): the id of a new row, and inserting many rows at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Rows(Protocol):
    """The result of a statement: its rows (each a sequence, in the order of the SELECT list)
    and how many rows it changed."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any:
        """DB-API's: one entry per column of the result, its name first."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    """One connection, inside the transaction `Database` opened for the function."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """The statement once per row (for a handful of rows; `insert_rows` is for many)."""

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        """Run an `INSERT` of one row into a table with an `id` key; the new row's id."""

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """Insert many rows in as few round trips as the engine allows."""

    def ids_copied(self, table: str) -> None:
        """Rows with their `id` given were inserted into `table`: new rows must get ids past
        them (a copy between databases)."""


class OwnSession(Session, Protocol):
    """A session as its engine hands it out: the worker thread that owns it closes it."""

    def close(self) -> None: ...


class Engine(Protocol):
    """What `Database` needs of an engine; the two are in sqlite_engine.py, postgres_engine.py."""

    name: str
    where: str  # how messages name the database (never with a password)
    setting: str  # the setting that chooses it

    @property
    def error(self) -> type[Exception]:
        """The driver's base exception."""

    def connect(self, *, read_only: bool) -> OwnSession: ...

    def begin(self, session: Session, *, write: bool) -> None: ...

    def probe(self) -> None: ...

    def ddl(self, statement: str) -> str: ...

    def is_transient(self, exc: BaseException) -> bool: ...

    def is_broken(self, exc: BaseException) -> bool:
        """Whether the connection that raised `exc` is unusable now."""

    def describe(self, exc: BaseException) -> str:
        """The driver's message, for an operator."""


class NotBegun(Exception):
    """The transaction's BEGIN failed (the cause says why): nothing of the work was sent."""


def in_transaction(engine: Engine, fn: Callable[[Session], T], session: Session, *,
                   write: bool) -> T:
    """`fn(session)` inside one transaction: COMMIT after it, ROLLBACK and re-raise on any
    exception. Connections are in autocommit mode, so DDL really runs inside it too."""
    try:
        engine.begin(session, write=write)
    except Exception as exc:
        raise NotBegun() from exc
    try:
        result = fn(session)
        if session.in_transaction:
            session.execute("COMMIT")
    except BaseException:
        if session.in_transaction:
            session.execute("ROLLBACK")
        raise
    return result
