"""The operator's commands: `kestrel accounts ...`, `keys ...`, `logs`, `stats`.

Each is a client of a running Kestrel's admin API (see client.py for why). Every command ends
with exit status 0, 1 when Kestrel refused the request or could not be reached, or 2 for a
command that cannot be sent as given, with a one-line message on standard error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from kestrel.admin_cli import accounts, keys, login, logs
from kestrel.admin_cli.client import AdminClient, CommandFailed, find_target
from kestrel.admin_cli.session import Session, colour_wanted


def add_commands(commands: Any) -> None:
    """`accounts`, `keys`, `logs` and `stats` under the top-level parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the running Kestrel (default: KESTREL_URL, or "
                        "http://127.0.0.1:PORT)")
    common.add_argument("--db", metavar="PATH",
                        help="database whose secrets file holds the admin key, when ADMIN_KEY "
                        "is not set (default: DB_PATH)")
    common.add_argument("--json", action="store_true", dest="as_json",
                        help="print what the admin API answered, as JSON, for scripts")
    pool = commands.add_parser("accounts", help="list and manage upstream accounts")
    pool_actions = pool.add_subparsers(dest="action", metavar="ACTION", required=True)
    accounts.add_parsers(pool_actions, common)
    login.add_parser(pool_actions, common)
    client_keys = commands.add_parser("keys", help="list, create and revoke client keys")
    key_actions = client_keys.add_subparsers(dest="action", metavar="ACTION",
                                                  required=True)
    keys.add_parsers(key_actions, common)
    logs.add_logs_parser(commands, common)
    logs.add_stats_parser(commands, common)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        target = find_target(args.url, args.db, environ)
        with AdminClient(target) as admin:
            session = Session(admin, as_json=args.as_json,
                              colour=colour_wanted(sys.stdout, environ))
            status: int = args.run(args, session)
            return status
    except CommandFailed as exc:
        print(f"kestrel: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
