"""Command line: `kestrel [serve] [--host H] [--port P] [--db PATH] [--workers N]`, `--version`,
`--help`, and `kestrel accounts login NAME` to connect a Claude subscription account.

`accounts login` talks to the running server's admin API rather than to the database: the
server holds the pool in memory and the login's single-use state, so an account connected this
way serves at once, with no restart, and the flow is the same one the dashboard uses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kestrel import __version__
from kestrel.config import DEFAULT_DB_PATH, DEFAULT_PORT, load_settings, secrets_path_for
from kestrel.domain import ConfigError, StoreError
from kestrel.logs import setup_logging
from kestrel.workers.handoff import Handoff

if TYPE_CHECKING:
    import httpx


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kestrel",
        description="One endpoint in front of a pool of Anthropic accounts. Settings come from "
        "the environment (PORT, HOST, DB_PATH, ADMIN_KEY, ENCRYPTION_KEY, CLAUDE_API_KEY, "
        "...); see the README.",
    )
    parser.add_argument("--version", action="version", version=f"kestrel {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the server (the default)")
    for target, default in ((parser, None), (serve, argparse.SUPPRESS)):
        # SUPPRESS on the subcommand keeps `kestrel --port 1 serve` from resetting port to None.
        target.add_argument("--host", default=default,
                            help="address to listen on (overrides HOST)")
        target.add_argument("--port", type=int, default=default,
                            help="port to listen on (overrides PORT)")
        target.add_argument("--db", metavar="PATH", default=default,
                            help="database file (overrides DB_PATH)")
        target.add_argument("--database-url", metavar="URL", default=default,
                            help="postgresql://... to keep the state in PostgreSQL instead "
                            "(overrides DATABASE_URL)")
        target.add_argument("--workers", metavar="N", default=default,
                            help="serving processes behind a supervisor, or auto for one per "
                            "CPU (overrides WORKERS; without either, one process)")
    accounts = commands.add_parser("accounts", help="manage upstream accounts")
    actions = accounts.add_subparsers(dest="action", metavar="ACTION", required=True)
    login = actions.add_parser(
        "login", help="connect a Claude subscription account (OAuth): prints a URL to open, "
        "then reads the code the sign-in page shows")
    login.add_argument("name", help="the account's name in Kestrel")
    login.add_argument("--url", help="the running Kestrel (default: http://127.0.0.1:PORT)")
    login.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                       help="database whose secrets file holds the admin key, when ADMIN_KEY "
                       "is not set (overrides DB_PATH)")
    migrate = commands.add_parser(
        "migrate-to", help="copy this box's SQLite database into PostgreSQL (stop Kestrel "
        "first)")
    migrate.add_argument("url", nargs="?", help="postgresql://USER:PASSWORD@HOST:PORT/DATABASE; "
                         "the database must exist (default: DATABASE_URL, which keeps the "
                         "password off the command line)")
    migrate.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                         help="the SQLite database to copy (overrides DB_PATH)")
    migrate.add_argument("--force", action="store_true",
                         help="replace what the target already holds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "accounts":
        return _login(args.name, args.url, args.db, os.environ)
    if args.command == "migrate-to":
        from kestrel.migrate_to import migrate_to

        return migrate_to(args.url, getattr(args, "db", None), force=args.force)
    try:
        settings = load_settings(os.environ, host=args.host, port=args.port, db_path=args.db,
                                 database_url=args.database_url,
                                 workers=args.workers)
        handoff = Handoff.from_environ(os.environ)  # set when a supervisor started us
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"kestrel: {problem}", file=sys.stderr)
        return 2
    setup_logging(level=settings.log_level, fmt=settings.log_format,
                  worker=handoff.index if handoff else None)
    try:
        if handoff is None and settings.workers is not None:
            from kestrel.workers.supervisor import supervise

            return supervise(settings)
        from kestrel.serve import serve  # the server's imports are not needed for --help

        return asyncio.run(serve(settings, handoff))
    except StoreError as exc:
        print(f"kestrel: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _login(name: str, url: str | None, db: str | None, environ: Mapping[str, str]) -> int:
    """The paste flow over the admin API. Prints the URL on stdout (so it can be piped to a
    browser elsewhere) and everything else on stderr; never prints a token."""
    import httpx  # here, not above: a WORKERS supervisor never needs it (10 MB less)

    base = (url or _local_url(environ)).rstrip("/")
    admin_key = environ.get("ADMIN_KEY", "").strip() or _stored_admin_key(
        Path(db or environ.get("DB_PATH", "").strip() or DEFAULT_DB_PATH).expanduser())
    if not admin_key:
        print("kestrel: no admin key: set ADMIN_KEY, or run where the server's database and "
              "its .secrets file are (or pass --db)", file=sys.stderr)
        return 2
    try:
        with httpx.Client(base_url=base, headers={"X-Admin-Key": admin_key},
                          timeout=60) as client:
            started = _admin_call(client, "/admin/oauth/start", {"name": name})
            print("Open this URL in a browser, sign in, and approve:", file=sys.stderr)
            print(started["authorize_url"], flush=True)
            print("Then paste the code the page shows (it looks like code#state):",
                  file=sys.stderr, flush=True)
            pasted = sys.stdin.readline().strip()
            if not pasted:
                print("kestrel: no code was pasted; nothing changed", file=sys.stderr)
                return 1
            account = _admin_call(client, "/admin/oauth/exchange",
                                  {"state": str(started["state"]), "code": pasted})
    except httpx.HTTPError as exc:
        print(f"kestrel: cannot reach Kestrel at {base} ({type(exc).__name__}): is the server "
              "running? (--url names another one)", file=sys.stderr)
        return 1
    except _AdminError as exc:
        print(f"kestrel: {exc}", file=sys.stderr)
        return 1
    who = f" as {account['email']}" if account.get("email") else ""
    print(f"Connected account {account['name']!r}{who}.", file=sys.stderr)
    return 0


class _AdminError(Exception):
    pass


def _admin_call(client: httpx.Client, path: str, body: dict[str, str]) -> dict[str, object]:
    response = client.post(path, json=body)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 300 or not isinstance(payload, dict):
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        raise _AdminError(f"{path} answered {response.status_code}: {message or 'no detail'}")
    return payload


def _local_url(environ: Mapping[str, str]) -> str:
    """The server this machine runs by the same settings: HOST and PORT, or their defaults."""
    host = environ.get("HOST", "").strip()
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    port = environ.get("PORT", "").strip() or str(DEFAULT_PORT)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def _stored_admin_key(db_path: Path) -> str | None:
    """The admin key generated at first start, from the secrets file beside the database.

    Only read: unlike the server, a login must never generate secrets of its own.
    """
    try:
        stored = json.loads(secrets_path_for(db_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = stored.get("admin_key") if isinstance(stored, dict) else None
    return key if isinstance(key, str) else None
