"""Command line: `kestrel [serve] [--host H] [--port P] [--db PATH]`, `--version`, `--help`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from kestrel import __version__
from kestrel.config import load_settings
from kestrel.domain import ConfigError, StoreError
from kestrel.logs import setup_logging


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(os.environ, host=args.host, port=args.port, db_path=args.db)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"kestrel: {problem}", file=sys.stderr)
        return 2
    setup_logging(level=settings.log_level, fmt=settings.log_format)
    from kestrel.serve import serve  # the server's imports are not needed for --help

    try:
        return asyncio.run(serve(settings))
    except StoreError as exc:
        print(f"kestrel: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
