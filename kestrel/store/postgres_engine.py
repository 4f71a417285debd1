"""PostgreSQL, for many Kestrel instances on many machines sharing one state (`DATABASE_URL`).

The driver is pg8000: pure Python, so `kestrel.pyz` stays one file for every Python and every
box (no libpq, no compiled module per Python version), and a DB-API connection like sqlite3's,
so the same repositories run on both engines through `Session`. It is not asyncio's: like
SQLite's, its connections live on the store's worker threads, and no proxied request waits on
it.

Every write transaction first takes one transaction-level advisory lock, so writes from every
instance run one at a time, as SQLite's BEGIN IMMEDIATE makes them on one box. That keeps the
repositories' read-then-write steps atomic without a retry loop, and it keeps the ids of the
change feed in commit order (an id taken by a transaction that commits later would otherwise be
skipped by a reader already past it). Reads run in REPEATABLE READ: one snapshot per function,
as on SQLite.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import pg8000.dbapi
import pg8000.exceptions

from kestrel.database_url import PostgresUrl
from kestrel.store.session import Rows, Session

# Once connected, no statement of ours runs long (the largest is a batch of request logs); a
# socket quiet this long belongs to a server that is gone.
STATEMENT_SOCKET_TIMEOUT = 60.0
# A constant advisory lock key: "kestrl" in ASCII. Any other program on the database is unlikely
# to pick the same number.
WRITE_LOCK_KEY = 0x6B657374726C
# SQLSTATE classes and codes after which the same statement can succeed later: connection
# exceptions, the server shutting down or starting, a read-only standby after a failover,
# insufficient resources, a serialization failure or deadlock.
_TRANSIENT_STATES = ("08", "53", "57P", "40001", "40P01", "25006")


def ssl_context(url: PostgresUrl) -> ssl.SSLContext | bool | None:
    """pg8000's `ssl_context` for the URL's `sslmode`, as libpq reads it.

    None is pg8000's "TLS if the server offers it, unverified", which is libpq's `prefer` (and
    close enough to `allow`); False is no TLS. As in libpq, `require` with a root certificate
    given checks the chain like `verify-ca`. The default CA store serves the `verify-` modes
    when no `sslrootcert` is given.
    """
    mode = url.sslmode
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return None
    context = ssl.create_default_context(cafile=url.sslrootcert)
    if mode == "require" and url.sslrootcert is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif mode != "verify-full":
        context.check_hostname = False
    return context


def _open_socket(url: PostgresUrl) -> socket.socket:
    """Connected within `connect_timeout`; after that, statements get their own timeout.

    pg8000 has one timeout for both; opening the socket here keeps a dead address from holding
    a request as long as a slow statement may take.
    """
    try:
        if url.host.startswith("/"):  # a directory: the server's Unix socket in it, as libpq
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(url.connect_timeout)
            try:
                sock.connect(f"{url.host}/.s.PGSQL.{url.port}")
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((url.host, url.port), url.connect_timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            # As libpq does: without it, the last small message of a COPY waits for the
            # server's delayed ACK (40 ms a batch here).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        raise pg8000.exceptions.InterfaceError(
            f"cannot connect to {url.where}: {exc.strerror or exc}") from exc
    sock.settimeout(STATEMENT_SOCKET_TIMEOUT)
    return sock


def _fields(exc: BaseException) -> dict[str, Any] | None:
    """The server's error fields (`C` the SQLSTATE, `M` the message) that pg8000 keeps as a
    DatabaseError's argument; None for any other error."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], dict) else None


def _sqlstate(exc: BaseException) -> str:
    return str((_fields(exc) or {}).get("C", ""))


def describe(exc: BaseException) -> str:
    """The server's message for a database error, else the exception's text."""
    fields = _fields(exc)
    if fields is None:
        return str(exc)
    return f"{fields.get('M', 'error')} ({fields.get('C', '?')})"


def is_transient(exc: BaseException) -> bool:
    """Whether the same work may succeed once the server or the network is back."""
    if isinstance(exc, pg8000.exceptions.InterfaceError | OSError):
        return True
    return (isinstance(exc, pg8000.exceptions.DatabaseError)
            and _sqlstate(exc).startswith(_TRANSIENT_STATES))


# `?` placeholders become pg8000's `%s`; a `%` of the statement's own is doubled. Quoted strings
# and identifiers are left as they are.
_PLACEHOLDER_PARTS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


@functools.lru_cache(maxsize=512)  # the repositories' statements are a fixed few
def _format_style(sql: str) -> str:
    def replace(match: re.Match[str]) -> str:
        part = match.group()
        return "%s" if part == "?" else "%%" if part == "%" else part
    return _PLACEHOLDER_PARTS.sub(replace, sql)


# Migrations are written in SQLite's types; these are PostgreSQL's for the same values. An
# `INTEGER PRIMARY KEY` is SQLite's rowid, given by the database when the insert names none.
_DDL_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(?:\s+AUTOINCREMENT)?\b", re.IGNORECASE),
     "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
]


# COPY's text format: a tab between columns, a newline after each row, \N for NULL, and these
# four escaped with a backslash inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: object) -> str:
    """One value in COPY's text format (what the column's input function reads)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float):
        return repr(value)  # a float's repr reads back exactly
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()  # bytea's hex form, its backslash escaped
    raise TypeError(f"no COPY text for a {type(value).__name__}")


class PostgresSession:
    """A `Session` over one pg8000 connection (autocommit: `Database` says BEGIN and COMMIT)."""

    def __init__(self, conn: pg8000.dbapi.Connection) -> None:
        self._conn = conn
        self._in_transaction = False

    @property
    def in_transaction(self) -> bool:
        """Whether a BEGIN of ours awaits its COMMIT or ROLLBACK (pg8000 keeps the server's
        own word on it private)."""
        return self._in_transaction

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if sql.startswith("BEGIN"):
            self._in_transaction = True
        elif sql in ("COMMIT", "ROLLBACK"):
            self._in_transaction = False
        cursor = self._conn.cursor()
        if params:
            cursor.execute(_format_style(sql), tuple(params))
        else:  # pg8000 sends a statement without parameters as it is: no %s to turn back
            cursor.execute(sql)
        return cursor  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def insert(self, sql: str, params: Sequence[Any]) -> int:
        (row_id,) = self.execute(f"{sql} RETURNING id", params).fetchone()
        return int(row_id)

    def insert_rows(self, table: str, columns: Sequence[str],
                    rows: Sequence[Sequence[Any]]) -> None:
        """`COPY … FROM STDIN`: one statement and one stream for the whole batch.

        Why not a multi-row INSERT: pg8000 encodes every bound parameter in Python, about 35 µs
        a row of a request log, and that work holds the interpreter while requests wait; the
        COPY text below is built by `str.translate` and `join` in C, a few µs a row.
        """
        if not rows:
            return
        text = "".join(["\t".join([_copy_text(value) for value in row]) + "\n"
                        for row in rows])
        self._conn.cursor().execute(f"COPY {table} ({', '.join(columns)}) FROM STDIN",
                                    stream=io.BytesIO(text.encode("utf-8")))

    def ids_copied(self, table: str) -> None:
        # An identity column's sequence does not move for ids given explicitly.
        self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")

    def close(self) -> None:
        with contextlib.suppress(pg8000.exceptions.InterfaceError, OSError):  # already gone
            self._conn.close()


class PostgresEngine:
    """Opens sessions on the database a `postgresql://` URL names."""

    name = "postgresql"
    setting = "DATABASE_URL"
    error = pg8000.exceptions.Error

    def __init__(self, url: str) -> None:
        self.url = PostgresUrl.parse(url)
        self.where = self.url.where

    def connect(self, *, read_only: bool) -> PostgresSession:
        url = self.url
        sock = _open_socket(url)
        try:
            conn = pg8000.dbapi.connect(
                url.user, host=url.host, sock=sock, port=url.port, database=url.database,
                password=url.password, ssl_context=ssl_context(url),
                application_name=url.application_name)
        except BaseException:
            sock.close()
            raise
        try:
            conn.autocommit = True
            session = PostgresSession(conn)
            if read_only:
                # A write slipped into `read()` fails at once, as on SQLite.
                session.execute("SET default_transaction_read_only = on")
        except BaseException:
            conn.close()
            raise
        return session

    @staticmethod
    def begin(session: Session, *, write: bool) -> None:
        if write:
            session.execute("BEGIN")
            session.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")
        else:
            session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def probe(self) -> None:
        """A fresh connection and a query: the server answers now, not only the pooled ones."""
        session = self.connect(read_only=True)
        try:
            session.execute("SELECT 1").fetchone()
        finally:
            session.close()

    @staticmethod
    def ddl(statement: str) -> str:
        for pattern, replacement in _DDL_TYPES:
            statement = pattern.sub(replacement, statement)
        return statement

    is_transient = staticmethod(is_transient)
    describe = staticmethod(describe)

    @staticmethod
    def is_broken(exc: BaseException) -> bool:
        # The socket failed, or the server ended the session (class 08, or an administrator's
        # or a shutdown's termination, 57P01-57P03).
        if isinstance(exc, pg8000.exceptions.InterfaceError | OSError):
            return True
        return _sqlstate(exc).startswith(("08", "57P"))
