"""`kestrel accounts list|add|edit|enable|disable|reset|remove|test`: the pool, from a shell."""

from __future__ import annotations

import argparse
from typing import Any

from kestrel.admin_cli.client import USAGE, CommandFailed
from kestrel.admin_cli.render import (
    Styled,
    millis,
    relative,
    state,
    table,
)
from kestrel.admin_cli.session import Session, read_secret
from kestrel.domain import one_line
from kestrel.egress import parse_proxy

# What a person can read on one line of a wide terminal; --json has the whole text.
ERROR_WIDTH = 60


def find_account(session: Session, ref: str) -> dict[str, Any]:
    """An account by name, or by id when no account has that name."""
    accounts = session.admin.call("GET", "/admin/accounts")["data"]
    for account in accounts:
        if account["name"] == ref:
            return dict(account)
    for account in accounts:
        if ref.isdigit() and account["id"] == int(ref):
            return dict(account)
    raise CommandFailed(f"no account is named {ref!r} (kestrel accounts list shows them)")


def list_accounts(args: argparse.Namespace, session: Session) -> int:
    accounts = session.admin.call("GET", "/admin/accounts")["data"]
    if session.as_json:
        session.print_json(accounts)
        return 0
    if not accounts:
        session.tell("No accounts yet: kestrel accounts add NAME (an API key), or "
                     "kestrel accounts login NAME (a Claude subscription).")
        return 0
    rows = [[str(a["id"]), a["name"], a["type"].replace("_", "-"), _status(a, session.now),
             str(a["priority"]), a["credential_hint"], relative(a["last_used_at"], session.now),
             one_line(a["last_error"], ERROR_WIDTH)] for a in accounts]
    session.print(table(["ID", "NAME", "TYPE", "STATUS", "PRIORITY", "CREDENTIAL", "LAST USED",
                         "LAST ERROR"], rows, session.colour))
    return 0


def _status(account: dict[str, Any], now: float) -> Styled:
    cell = state(account["status"])
    if account["status"] == "cooldown" and account["cooldown_until"]:
        return Styled(f"cooldown, {relative(account['cooldown_until'], now)}", cell.style)
    return cell


def add_account(args: argparse.Namespace, session: Session) -> int:
    body: dict[str, Any] = {"name": args.name, "api_key": read_secret("Anthropic API key"),
                            **_settings(args)}
    account = session.admin.call("POST", "/admin/accounts", body)
    return _report(session, account, f"Added account {account['name']!r} (id {account['id']})")


def edit_account(args: argparse.Namespace, session: Session) -> int:
    body = _settings(args)
    if args.new_name is not None:
        body["name"] = args.new_name
    if args.api_key:
        body["api_key"] = read_secret("Anthropic API key")
    if not body:
        raise CommandFailed("nothing to change: give --name, --priority, --base-url, "
                            "--proxy-url or --api-key", USAGE)
    return _change(session, args.account, "PUT", "", body, "Changed")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The non-secret fields add and edit share; those left out are not sent."""
    body: dict[str, Any] = {}
    if args.priority is not None:
        body["priority"] = args.priority
    if args.base_url is not None:
        body["base_url"] = args.base_url or None
    if args.proxy_url is not None:
        body["proxy_url"] = _proxy_url(args.proxy_url)
    if getattr(args, "disabled", False):
        body["enabled"] = False
    return body


def _proxy_url(given: str) -> str | None:
    """`-` reads the URL like a secret; a URL with a password is refused on the command line."""
    if given == "":
        return None
    if given == "-":
        return read_secret("proxy URL")
    try:
        proxy = parse_proxy(given)
    except ValueError as exc:
        raise CommandFailed(f"--proxy-url {exc}", USAGE) from None
    if proxy.password is not None:
        raise CommandFailed("a proxy password does not go on the command line (shell history, "
                            "ps): pass --proxy-url - and type the URL at the prompt or pipe it",
                            USAGE)
    return given


def enable_account(args: argparse.Namespace, session: Session) -> int:
    return _change(session, args.account, "PUT", "", {"enabled": True}, "Enabled")


def disable_account(args: argparse.Namespace, session: Session) -> int:
    return _change(session, args.account, "PUT", "", {"enabled": False}, "Disabled")


def reset_account(args: argparse.Namespace, session: Session) -> int:
    return _change(session, args.account, "POST", "/reset", None,
                   "Cleared the cooldown and errors of")


def remove_account(args: argparse.Namespace, session: Session) -> int:
    account = find_account(session, args.account)
    session.admin.call("DELETE", f"/admin/accounts/{account['id']}")
    return session.answer({"deleted": account["id"], "name": account["name"]},
                          f"Removed account {account['name']!r} (id {account['id']}).")


def _change(session: Session, ref: str, method: str, suffix: str,
            body: dict[str, Any] | None, done: str) -> int:
    account = find_account(session, ref)
    changed = session.admin.call(method, f"/admin/accounts/{account['id']}{suffix}", body)
    return _report(session, changed, f"{done} account {changed['name']!r}")


def _report(session: Session, account: dict[str, Any], what: str) -> int:
    return session.answer(account, f"{what}; it is {account['status']}.")


def test_account(args: argparse.Namespace, session: Session) -> int:
    """Exit 0 when upstream accepted the credential, 1 when it did not."""
    account = find_account(session, args.account)
    result = session.admin.call("POST", f"/admin/accounts/{account['id']}/test")
    if session.as_json:
        session.print_json(result)
        return 0 if result["ok"] else 1
    after = _status(result["account"], session.now).text
    after = f"in {after}" if after.startswith("cooldown") else after
    if result["ok"]:
        session.print(f"{account['name']}: ok, upstream answered {result['status']} in "
                      f"{millis(result['latency_ms'])}; the account is {after}.")
        return 0
    if result["status"] is None:  # no HTTP answer: the connection or the proxy failed
        via = f" through {result['proxy']}" if result["proxy"] else ""
        said = f"no answer from upstream{via} ({result['error_type']})"
    else:
        said = f"{result['status']} {result['error_type'] or ''}".rstrip()
    message = f": {result['message']}" if result["message"] else ""
    session.print(f"{account['name']}: failed, {said}{message}; the account is {after}.")
    return 1


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    """The account actions, each sharing `common` (--url, --db, --json)."""
    def action(name: str, run: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, parents=[common],
                                                              help=help_text)
        parser.set_defaults(run=run)
        return parser

    def named(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("account", help="the account's name (or its id)")

    action("list", list_accounts, "accounts, their state and last error")
    add = action("add", add_account, "add an API-key account; the key is read from standard "
                 "input or a hidden prompt")
    add.add_argument("name", help="the account's name in Kestrel")
    add.add_argument("--disabled", action="store_true", help="add it switched off")
    edit = action("edit", edit_account, "change an account's name, priority, base URL, proxy "
                  "or API key")
    named(edit)
    edit.add_argument("--name", dest="new_name", help="a new name")
    edit.add_argument("--api-key", action="store_true",
                      help="replace the API key: read from standard input or a hidden prompt")
    for parser in (add, edit):
        parser.add_argument("--priority", type=int, help="higher is tried first (default 0)")
        parser.add_argument("--base-url", metavar="URL",
                            help="this account's upstream ('' for CLAUDE_BASE_URL)")
        parser.add_argument("--proxy-url", metavar="URL",
                            help="this account's egress proxy: http://, https://, socks5://, "
                            "socks5h:// ('' for the environment's; - to read one with a "
                            "password from standard input or a hidden prompt)")
    for name, run, text in (("enable", enable_account, "let an account serve again"),
                            ("disable", disable_account, "stop sending requests to an account"),
                            ("reset", reset_account, "clear an account's cooldown and errors"),
                            ("remove", remove_account, "delete an account and its credential"),
                            ("test", test_account, "send one minimal request through an "
                             "account; exit 1 if upstream refused it")):
        named(action(name, run, text))
