"""Command line: `kestrel [serve] [--host H] [--port P] [--db PATH] [--workers N]`, `--version`,
`--help`, `kestrel migrate-to URL`, and the operator's commands (`accounts`, `keys`, `logs`,
`stats`; see kestrel/admin_cli), which talk to a running server's admin API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from kestrel import __version__
from kestrel.admin_cli import add_commands
from kestrel.admin_cli import run as run_command
from kestrel.config import load_settings
from kestrel.domain import ConfigError, StoreError
from kestrel.logs import setup_logging
from kestrel.workers.handoff import Handoff


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
    add_commands(commands)
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
    if getattr(args, "run", None) is not None:  # one of the operator's commands
        return run_command(args, os.environ)
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
