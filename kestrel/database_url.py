"""What a `postgresql://` URL says (DATABASE_URL), read as libpq reads it: one reading for the
settings that check it, the store that connects with it, and every message that names it.

No driver here: a SQLite deployment reads its settings without loading PostgreSQL's.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

SCHEMES = ("postgresql", "postgres")  # libpq accepts both spellings
DEFAULT_PORT = 5432
# libpq's `connect_timeout` when the URL has none: long enough for a failover, short enough that
# a dead address does not hold an admin request for minutes.
DEFAULT_CONNECT_TIMEOUT = 10.0
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def is_postgres_url(text: str) -> bool:
    """Whether `text` names a PostgreSQL database rather than a file."""
    return urllib.parse.urlsplit(text).scheme in SCHEMES


@dataclass(frozen=True)
class PostgresUrl:
    """What a `postgresql://` URL says, read as libpq reads it (the parts Kestrel uses)."""

    host: str
    port: int
    database: str
    user: str
    password: str | None = field(repr=False)
    sslmode: str
    sslrootcert: str | None
    connect_timeout: float
    application_name: str

    @classmethod
    def parse(cls, url: str) -> PostgresUrl:
        """`ValueError` naming what is wrong, never quoting the password."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError("the URL must start with postgresql://")
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - {"host", "port", "user", "password", "dbname", "sslmode",
                                "sslrootcert", "connect_timeout", "application_name"}
        if unknown:
            raise ValueError(f"unknown URL parameter(s): {', '.join(sorted(unknown))}")
        try:
            port = int(query.get("port") or parts.port or DEFAULT_PORT)
        except ValueError:
            raise ValueError("the port is not a number") from None
        sslmode = query.get("sslmode", "prefer")
        if sslmode not in SSL_MODES:
            raise ValueError(f"sslmode must be one of {', '.join(SSL_MODES)}")
        try:
            timeout = float(query.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT)
        except ValueError:
            raise ValueError("connect_timeout is not a number") from None
        user = query.get("user") or urllib.parse.unquote(parts.username or "")
        if not user:
            raise ValueError("the URL names no user (postgresql://USER@HOST/DATABASE)")
        password = query.get("password")
        if password is None and parts.password is not None:
            password = urllib.parse.unquote(parts.password)
        host = query.get("host") or urllib.parse.unquote(parts.hostname or "") or "localhost"
        database = query.get("dbname") or urllib.parse.unquote(parts.path.lstrip("/")) or user
        return cls(host=host, port=port, database=database, user=user, password=password,
                   sslmode=sslmode, sslrootcert=query.get("sslrootcert") or None,
                   connect_timeout=timeout, application_name=query.get("application_name")
                   or "kestrel")

    @property
    def where(self) -> str:
        """The URL without its password, for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"
