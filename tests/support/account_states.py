"""The README's rotation table as checks on accounts, read through the admin API.

After a fault each account must look as "How rotation works" says: untouched by success,
`invalid` after a 401, cooling until the reset Anthropic named after a 429, and a short
cooldown ("1 s doubling, at most 60 s") after a 5xx, no connection or a timeout. Cooldowns are
checked against the window of time in which the failure could have happened, so the checks are
exact without knowing the moment of each failure.

A short cooldown is often over by the time a burst ends (the admin API then shows no
`cooldown_until`). `short_cooldown` then probes: it puts the account first in line and sends
one request, which must be served by another account while the faulty one fails once more and
cools down for the doubled backoff.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from kestrel.proxy.cooldown import JITTER_SPREAD

from support.stack import Stack, message_body

# "short cooldown: 1 s doubling, at most 60 s"
SHORT_BACKOFF_BASE = 1.0
SHORT_BACKOFF_CAP = 60.0


def epoch(stamp: str | None) -> float:
    assert stamp is not None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def short_backoff(failures: int) -> tuple[float, float]:
    """The shortest and longest short cooldown after the `failures`-th failure in a row."""
    base = SHORT_BACKOFF_BASE * 2 ** (failures - 1)
    return min(SHORT_BACKOFF_CAP, base), min(SHORT_BACKOFF_CAP, base * (1 + JITTER_SPREAD))


def healthy(account: dict[str, Any]) -> None:
    """Success clears the failure count and the cooldown; an untouched account is the same."""
    assert (account["status"], account["consecutive_failures"], account["cooldown_until"],
            account["last_error"]) == ("active", 0, None, None), account


def invalid(account: dict[str, Any]) -> None:
    """401: marked `invalid` until its key is changed or it is reset."""
    assert account["status"] == "invalid", account
    assert account["consecutive_failures"] >= 1 and account["last_error"].startswith("401")


def cooling_until(account: dict[str, Any], low: float, high: float, last_error: str) -> None:
    """Cooling down until a moment between `low` and `high` (epoch seconds)."""
    assert account["status"] == "cooldown", account
    assert low <= epoch(account["cooldown_until"]) <= high, (account, low, high)
    assert account["consecutive_failures"] >= 1 and account["last_error"].startswith(last_error)


def left_alone_or_short_cooldown(account: dict[str, Any], since: float) -> None:
    """After streams broke mid-way on the account (no error event): the table has no row for
    a break after the first byte, only "the request stays on its account". So the account is
    either untouched (or cleared by a later success), or given the short cooldown (running, or
    already served); never invalid, exhausted or cooling for longer."""
    failures = account["consecutive_failures"]
    if account["status"] == "cooldown":
        low, high = short_backoff(failures)
        assert since + low <= epoch(account["cooldown_until"]) <= time.time() + high, account
    elif failures == 0:
        healthy(account)
    else:
        assert (account["status"], account["cooldown_until"]) == ("active", None), account
        assert account["last_error"], account


def short_cooldown(stack: Stack, name: str, since: float, *, last_error: str | None = None,
                   probe_served: bool = True) -> None:
    """`name` failed since `since` and got the short cooldown for its failure count.

    `probe_served`: whether another account can serve the probe; if not, it must get the
    documented 429.
    """
    account = stack.account(name)
    failures = account["consecutive_failures"]
    window = (since, time.time())
    if account["status"] != "cooldown":  # served already, so the admin API no longer shows it
        assert (account["status"], account["cooldown_until"]) == ("active", None), account
        assert failures >= 1, account
        account, window = _probe(stack, name, probe_served)
        assert account["consecutive_failures"] == failures + 1, account  # doubling
        failures += 1
    low, high = short_backoff(failures)
    assert account["status"] == "cooldown", account
    assert window[0] + low <= epoch(account["cooldown_until"]) <= window[1] + high, \
        (account, window)
    assert account["last_error"], account
    if last_error is not None:
        assert account["last_error"].startswith(last_error), account


def _probe(stack: Stack, name: str,
           served: bool) -> tuple[dict[str, Any], tuple[float, float]]:
    """One request with `name` first in line: `name` fails on the way, and the request is
    served elsewhere (or, if not `served`, gets the documented 429). Returns `name` as the admin
    API shows it right after, and when the probe ran."""
    with stack.admin() as admin:
        account_id = stack.accounts[name]
        priority = admin.get(f"/admin/accounts/{account_id}").json()["priority"]
        assert admin.put(f"/admin/accounts/{account_id}",
                         json={"priority": priority + 1000}).status_code == 200
        try:
            started = time.time()
            with stack.http() as client:
                response = client.post("/v1/messages", json=message_body(f"probe {started}"))
            expected = (200, "message") if served else (429, "error")
            assert (response.status_code, response.json()["type"]) == expected, response.text
            probed: dict[str, Any] = admin.get(f"/admin/accounts/{account_id}").json()
            return probed, (started, time.time())
        finally:
            admin.put(f"/admin/accounts/{account_id}", json={"priority": priority})
