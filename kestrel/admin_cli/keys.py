"""`kestrel keys list|create|revoke`: client keys, from a shell."""

from __future__ import annotations

import argparse
from typing import Any

from kestrel.admin_cli.client import CommandFailed
from kestrel.admin_cli.render import limits, money, parse_iso, relative, state, table
from kestrel.admin_cli.session import Session

# The limits `keys create` sets, as (flag's destination, type); the names are the API's.
_LIMIT_FLAGS = (("rpm", int), ("tpm", int), ("max_concurrency", int), ("daily_tokens", int),
                ("daily_budget_usd", float), ("monthly_budget_usd", float))


def key_state(key: dict[str, Any], now: float) -> str:
    if key["revoked_at"]:
        return "revoked"
    expires = parse_iso(key["expires_at"])
    return "expired" if expires is not None and expires <= now else "active"


def find_key(session: Session, ref: str) -> dict[str, Any]:
    """A key by name among the keys still in use, by prefix, or by id: the ways an operator
    knows one (the secret itself is never asked for, and never on a command line)."""
    keys = session.admin.call("GET", "/admin/keys")["data"]
    live = [k for k in keys if not k["revoked_at"]]
    for matches in ([k for k in live if k["name"] == ref],
                    [k for k in keys if len(ref) >= 8 and k["prefix"].startswith(ref)],
                    [k for k in keys if ref.isdigit() and k["id"] == int(ref)]):
        if len(matches) == 1:
            return dict(matches[0])
        if len(matches) > 1:
            ids = ", ".join(str(k["id"]) for k in sorted(matches, key=lambda k: k["id"]))
            raise CommandFailed(f"{len(matches)} keys match {ref!r} (ids {ids}): name one by "
                                "its id")
    raise CommandFailed(f"no key in use is named {ref!r} (kestrel keys list shows them)")


def list_keys(args: argparse.Namespace, session: Session) -> int:
    keys = session.admin.call("GET", "/admin/keys")["data"]
    if not args.all:
        keys = [k for k in keys if not k["revoked_at"]]
    if session.as_json:
        session.print_json(keys)
        return 0
    if not keys:
        session.tell("No client keys yet: kestrel keys create NAME")
        return 0
    rows = [[str(k["id"]), k["name"], k["prefix"], state(key_state(k, session.now)),
             k["owner"] or "", limits(k), money(k["spent_today_usd"]),
             money(k["spent_this_month_usd"]), relative(k["last_used_at"], session.now)]
            for k in keys]
    session.print(table(["ID", "NAME", "PREFIX", "STATE", "OWNER", "LIMITS", "TODAY",
                         "THIS MONTH", "LAST USED"], rows, session.colour))
    return 0


def create_key(args: argparse.Namespace, session: Session) -> int:
    """The key alone on standard output (`KEY=$(kestrel keys create ci)` works), the rest on
    standard error: it is shown this once."""
    body: dict[str, Any] = {"name": args.name}
    for name, _ in _LIMIT_FLAGS:
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    for name in ("owner", "note", "expires_at"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    for name in ("models", "allowed_ips"):
        if getattr(args, name) is not None:
            body[name] = [item.strip() for item in getattr(args, name).split(",")
                          if item.strip()]
    created = session.admin.call("POST", "/admin/keys", body)
    session.tell(f"Created key {created['name']!r} (id {created['id']}). It is shown this once: "
                 "store it now.")
    return session.answer(created, created["key"])


def revoke_key(args: argparse.Namespace, session: Session) -> int:
    key = find_key(session, args.key)
    revoked = session.admin.call("DELETE", f"/admin/keys/{key['id']}")
    return session.answer(revoked, f"Revoked key {revoked['name']!r} ({revoked['prefix']}…, "
                                   f"id {revoked['id']}): it is refused from the next request.")


def add_parsers(commands: Any, common: argparse.ArgumentParser) -> None:
    listed = commands.add_parser("list", parents=[common], help="client keys, their limits "
                                 "and what they spent")
    listed.add_argument("--all", action="store_true", help="revoked keys too")
    listed.set_defaults(run=list_keys)
    create = commands.add_parser("create", parents=[common], help="make a client key; it is "
                                 "printed once")
    create.add_argument("name", help="what the key is for (a person, a machine)")
    create.add_argument("--owner", help="who holds it")
    create.add_argument("--note", help="free text")
    create.add_argument("--models", metavar="LIST",
                        help="models it may use, comma-separated; * matches any run of "
                        "characters (claude-haiku-*)")
    create.add_argument("--allowed-ips", metavar="LIST",
                        help="addresses or networks (CIDR) it may be used from, comma-separated")
    create.add_argument("--expires-at", metavar="TIME",
                        help="RFC 3339 time with an offset, e.g. 2027-01-31T00:00:00Z")
    for name, kind in _LIMIT_FLAGS:
        create.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind,
                            metavar="N" if kind is int else "USD")
    create.set_defaults(run=create_key)
    revoke = commands.add_parser("revoke", parents=[common], help="revoke a client key")
    revoke.add_argument("key", help="the key's name, its prefix, or its id")
    revoke.set_defaults(run=revoke_key)
