"""How the operator's commands reach a running Kestrel: where it is, the admin key, one call.

The commands are clients of the admin API, never of the database: the server owns the pool and
its caches, so a change made here serves from the next request, exactly as one made in the
dashboard, on every process and every instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from kestrel.announce import url_for
from kestrel.config import DEFAULT_DB_PATH, DEFAULT_PORT, secrets_path_for

REFUSED = 1
"""Exit status when Kestrel refused the request or could not be reached."""
USAGE = 2
"""Exit status for a command that cannot be sent as given (argparse uses 2 as well)."""

# Longer than the account test's own bound (8 s), so the server's answer is what the operator
# sees; short enough that a hung server does not hang a script.
TIMEOUT_SECONDS = 30.0


class CommandFailed(Exception):
    """A command that cannot finish: a one-line message, and the exit status it ends with."""

    def __init__(self, message: str, status: int = REFUSED) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    url: str
    admin_key: str


def find_target(url: str | None, db: str | None, environ: Mapping[str, str]) -> Target:
    """The Kestrel to talk to (`--url`, KESTREL_URL, or this box's by HOST and PORT) and its
    admin key (ADMIN_KEY, or the secrets file beside the database, so nothing needs typing on
    the server itself)."""
    base = (url or environ.get("KESTREL_URL", "").strip() or local_url(environ)).rstrip("/")
    admin_key = environ.get("ADMIN_KEY", "").strip() or stored_admin_key(
        Path(db or environ.get("DB_PATH", "").strip() or DEFAULT_DB_PATH).expanduser())
    if not admin_key:
        raise CommandFailed("no admin key: set ADMIN_KEY, or run where the server's database "
                            "and its .secrets file are (or pass --db)", USAGE)
    return Target(base, admin_key)


def local_url(environ: Mapping[str, str]) -> str:
    """The server this machine runs by the same settings: HOST and PORT, or their defaults."""
    host = environ.get("HOST", "").strip()
    # `::` is every address too; a client reaches it on the loopback as it does `0.0.0.0`.
    return url_for("" if host == "::" else host,
                   environ.get("PORT", "").strip() or DEFAULT_PORT)


def stored_admin_key(db_path: Path) -> str | None:
    """The admin key generated at first start, from the secrets file beside the database.

    Only read: unlike the server, a command must never generate secrets of its own.
    """
    try:
        stored = json.loads(secrets_path_for(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = stored.get("admin_key") if isinstance(stored, dict) else None
    return key if isinstance(key, str) else None


class AdminClient:
    """One connection to the admin API; every answer that is not 2xx JSON becomes CommandFailed
    with the server's own message."""

    def __init__(self, target: Target, timeout: float = TIMEOUT_SECONDS) -> None:
        import httpx  # here: `kestrel serve --workers` builds this parser and never needs httpx

        self._httpx = httpx
        self.url = target.url
        self._client = httpx.Client(base_url=target.url, timeout=timeout, trust_env=False,
                                    headers={"X-Admin-Key": target.admin_key,
                                             "User-Agent": "kestrel-cli"})

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._client.close()

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None,
             params: Mapping[str, str | int] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body, params=params)
        except self._httpx.HTTPError as exc:
            raise CommandFailed(f"cannot reach Kestrel at {self.url} ({type(exc).__name__}): "
                                "is the server running? (--url or KESTREL_URL names another "
                                "one)") from None
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success and payload is not None:
            return payload
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise CommandFailed(f"{method} {path} answered {response.status_code}: "
                            f"{message or 'no detail'}")
