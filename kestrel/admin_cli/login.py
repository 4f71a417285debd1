"""`kestrel accounts login NAME`: connect a Claude subscription account from a terminal.

The same flow the dashboard uses, through the admin API: the server holds the login's
single-use state, and the account serves at once, with no restart.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kestrel.admin_cli.session import Session


def login(args: argparse.Namespace, session: Session) -> int:
    """Prints the URL on standard output (so it can be piped to a browser elsewhere) and
    everything else on standard error; never prints a token."""
    started = session.admin.call("POST", "/admin/oauth/start", {"name": args.name})
    session.tell("Open this URL in a browser, sign in, and approve:")
    session.print(started["authorize_url"])
    session.tell("Then paste the code the page shows (it looks like code#state):")
    pasted = sys.stdin.readline().strip()
    if not pasted:
        session.tell("kestrel: no code was pasted; nothing changed")
        return 1
    account = session.admin.call("POST", "/admin/oauth/exchange",
                                 {"state": str(started["state"]), "code": pasted})
    who = f" as {account['email']}" if account.get("email") else ""
    session.tell(f"Connected account {account['name']!r}{who}.")
    if session.as_json:
        session.print_json(account)
    return 0


def add_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "login", parents=[common], help="connect a Claude subscription account (OAuth): prints "
        "a URL to open, then reads the code the sign-in page shows")
    parser.add_argument("name", help="the account's name in Kestrel")
    parser.set_defaults(run=login)
