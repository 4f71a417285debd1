"""`kestrel logs [--follow]` and `kestrel stats`: what the pool served, from a shell."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

from kestrel.admin_cli.accounts import find_account
from kestrel.admin_cli.keys import find_key
from kestrel.admin_cli.render import (
    Cell,
    count,
    http_status,
    millis,
    money,
    parse_iso,
    table,
)
from kestrel.admin_cli.session import Session
from kestrel.domain import one_line

# How often --follow asks for new rows: the server writes its request logs in batches every
# few hundred milliseconds, so asking more often finds nothing more.
FOLLOW_SECONDS = 1.0
# A row written late (batched by another process) can appear behind newer ones: each poll looks
# this far back, and the ids already printed keep it from printing twice.
FOLLOW_OVERLAP_SECONDS = 30.0
ERROR_WIDTH = 40


class Names:
    """Account and key names by id, read once, so rows say `work` rather than `#3`."""

    def __init__(self, session: Session) -> None:
        self.accounts = {a["id"]: a["name"]
                         for a in session.admin.call("GET", "/admin/accounts")["data"]}
        self.keys = {k["id"]: k["name"] for k in session.admin.call("GET", "/admin/keys")["data"]}

    def account(self, account_id: int | None) -> str:
        return "-" if account_id is None else self.accounts.get(account_id, f"#{account_id}")

    def key(self, key_id: int | None) -> str:
        return "-" if key_id is None else self.keys.get(key_id, f"#{key_id}")


def show_logs(args: argparse.Namespace, session: Session) -> int:
    params: dict[str, str | int] = {"limit": args.limit}
    if args.account is not None:
        params["account_id"] = find_account(session, args.account)["id"]
    if args.key is not None:
        params["key_id"] = find_key(session, args.key)["id"]
    if args.status is not None:
        params["status"] = args.status
    if args.model is not None:
        params["model"] = args.model
    names = None if session.as_json else Names(session)
    rows = session.admin.call("GET", "/admin/logs", params=params)["data"][::-1]
    _print_rows(session, names, rows, header=True)
    if not args.follow:
        return 0
    # Printed rows by id, with their time: only those inside the overlap can come again.
    seen = {row["id"]: parse_iso(row["ts"]) or 0.0 for row in rows}
    newest = max(seen.values(), default=session.now)
    try:
        while True:
            time.sleep(FOLLOW_SECONDS)
            since = newest - FOLLOW_OVERLAP_SECONDS
            page = session.admin.call("GET", "/admin/logs",
                                      params={**params, "limit": 500, "since": f"{since:.3f}"})
            fresh = [row for row in page["data"][::-1] if row["id"] not in seen]
            seen = {id_: at for id_, at in seen.items() if at >= since}
            seen.update((row["id"], parse_iso(row["ts"]) or 0.0) for row in fresh)
            newest = max(seen.values(), default=newest)
            _print_rows(session, names, fresh, header=False)
    except KeyboardInterrupt:
        return 0


def _print_rows(session: Session, names: Names | None, rows: list[dict[str, Any]],
                header: bool) -> None:
    if names is None:  # --json: one object per line, which a follower can read as it comes
        for row in rows:
            session.print(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        if header:
            session.tell("No requests match.")
        return
    lines = table(["TIME", "STATUS", "ROUTE", "MODEL", "KEY", "ACCOUNT", "TOKENS IN/OUT",
                   "COST", "LATENCY", "ERROR"],
                  [_log_row(row, names) for row in rows], session.colour).splitlines()
    # A followed page has no header: its columns line up with their own rows, not the first's.
    session.print("\n".join(lines if header else lines[1:]))


def _log_row(row: dict[str, Any], names: Names) -> list[Cell]:
    at = parse_iso(row["ts"]) or 0.0
    tokens = row["input_tokens"] + row["cache_read_tokens"] + row["cache_creation_tokens"]
    tried = [names.account(a["account_id"]) for a in row["attempts"]
             if a["account_id"] != row["account_id"]]
    account = names.account(row["account_id"]) + (f" (after {', '.join(tried)})"
                                                   if tried else "")
    return [datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S"), http_status(row["status"]),
            row["route"], row["model"] or "-", names.key(row["key_id"]), account,
            f"{count(tokens)}/{count(row['output_tokens'])}",
            money(row["cost_usd"]) if row["priced"] else "unpriced", millis(row["latency_ms"]),
            one_line(row["error_type"], ERROR_WIDTH)]


def show_stats(args: argparse.Namespace, session: Session) -> int:
    stats = session.admin.call("GET", "/admin/stats", params={"window": args.window})
    if session.as_json:
        session.print_json(stats)
        return 0
    names = Names(session)
    totals = stats["totals"]
    errors = totals["errors"]
    rate = f" ({errors / totals['requests']:.1%})" if totals["requests"] else ""
    session.print(f"Last {stats['window']}: {count(totals['requests'])} requests, "
                  f"{count(errors)} errors{rate}, {money(totals['cost_usd'])}")
    session.print(f"Tokens: {count(totals['input_tokens'])} in, "
                  f"{count(totals['output_tokens'])} out, {count(totals['cache_read_tokens'])} "
                  f"cache reads, {count(totals['cache_creation_tokens'])} cache writes")
    session.print(f"Latency p50 {millis(totals['p50_latency_ms'])}, p95 "
                  f"{millis(totals['p95_latency_ms'])}; first byte p50 "
                  f"{millis(totals['p50_ttfb_ms'])}, p95 {millis(totals['p95_ttfb_ms'])}")
    for title, rows, name_of in (("ACCOUNT", stats["accounts"], names.account),
                                 ("KEY", stats["keys"], names.key),
                                 ("MODEL", stats["models"], lambda m: m or "-")):
        if rows:
            field = {"ACCOUNT": "account_id", "KEY": "key_id", "MODEL": "model"}[title]
            session.print()
            session.print(table([title, "REQUESTS", "ERRORS", "TOKENS IN", "TOKENS OUT", "COST",
                                 "P50", "P95"],
                                [[name_of(row[field]), count(row["requests"]),
                                  count(row["errors"]), count(row["input_tokens"]),
                                  count(row["output_tokens"]), money(row["cost_usd"]),
                                  millis(row["p50_latency_ms"]), millis(row["p95_latency_ms"])]
                                 for row in rows], session.colour))
    return 0


def _page_size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 500")
    return int(text)


def add_logs_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    logs = commands.add_parser("logs", parents=[common], help="recent requests, oldest first; "
                               "--follow for new ones as they come")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new requests")
    logs.add_argument("-n", "--limit", type=_page_size, default=20, metavar="N",
                      help="how many recent requests (1 to 500, default 20)")
    logs.add_argument("--account", help="only requests this account served or tried (name or "
                      "id)")
    logs.add_argument("--key", help="only requests made with this client key (name, prefix "
                      "or id)")
    logs.add_argument("--status", type=int, help="only requests answered with this status")
    logs.add_argument("--model", help="only requests for this model")
    logs.set_defaults(run=show_logs)


def add_stats_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    stats = commands.add_parser("stats", parents=[common], help="requests, errors, tokens, "
                                "cost and latency, in total and per account, key and model")
    stats.add_argument("--window", choices=("1h", "24h", "7d"), default="24h",
                       help="time covered (default 24h)")
    stats.set_defaults(run=show_stats)
