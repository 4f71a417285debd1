"""The fault matrix (issue 8): upstream faults against a pool of three accounts, 200 requests each.

Every row runs one Kestrel process (shared by the module, restored between rows) in front of
the fake Anthropic, with accounts a, b and c of equal priority. A fault is put on account a
(or on all three), then 200 requests, every other one streaming, are sent at once from
concurrent clients, each with a 20 s deadline on its whole exchange. Every request is judged
(the verdicts are defined in full in `support/burst.py`):

- **served**: status 200 and, byte for byte, the whole answer the upstream produced for this
  very request (Anthropic's `request-id`, passed on by Kestrel, names the upstream request;
  its recorded body must be exactly the body this client sent, so a mixed-up answer is
  caught);
- **documented error**: either the README's answer when no account could serve (429
  `rate_limit_error` with `retry-after`, or 503 `api_error`, in Anthropic's shape), or, for a
  stream that broke after its first byte went to the client, what the README promises there:
  "a stream that breaks mid-way ends for the client as it would from Anthropic". Precisely:
  status 200, a non-empty byte prefix of the upstream's answer to this very request, no
  `message_stop`, then the end of the stream (a clean end, or the connection closed so that
  the chunked body is visibly incomplete); an upstream `event: error` must reach the client
  whole. Never another request's bytes, never bytes the upstream did not send, never a hang;
- **wrong**: anything else, e.g. an upstream failure relayed although nothing had reached the
  client yet and another account could serve;
- **hung**: not ended by the deadline.

Each row asserts: no wrong answer, nothing hung, `/health` still 200, and the counts the README
implies: a fault that strikes before the first byte costs nothing (all 200 served, the request
quietly moved to the next account); a fault mid-stream (put on streams only) ends exactly the
streams that had started on the faulty account, one documented error per broken stream the
fake recorded, and everything else is served; when no account can serve, every request gets
the documented error. Then the accounts must end as the rotation table says
(`support/account_states.py`): after a failure before the first byte the faulty one is in the
short cooldown for its failure count (probed once more if the cooldown already ran out); after
breaks mid-stream, for which the table has no row, it is left alone or in a short cooldown;
the others are untouched. The fake's records prove each fault really happened on the account
it was put on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from fake_upstream import (
    Step,
    cut_stream_after,
    end_stream_after,
    error,
    garbage,
    hang,
    invalid_json,
    only_streams,
    overloaded,
    rate_limited,
    reset_after_headers,
    reset_before_headers,
    reset_mid_stream,
    stall_stream_after,
)
from support import account_states
from support.burst import Verdict, burst
from support.faults import (
    explain,
    finish_row,
    refusing_address,
    restore,
    three_accounts,
    unanswered_address,
)
from support.stack import Stack, account_key

# Events a broken stream sends first: message_start, ping, content_block_start, one delta.
STARTED = 4


@dataclass(frozen=True)
class Places:
    """Upstream addresses that fail below HTTP (see `support/faults.py`)."""

    refusing: str
    unanswered: str


@dataclass(frozen=True)
class Fault:
    label: str
    """The row's name in the printed table."""
    arrange: Callable[[Stack, Places], None]
    """Puts the fault on account a."""
    step: str | None
    """The fake's record of the fault on a; None when it happens before the fake (connect)."""
    mid_stream: bool = False
    """It strikes streams after their first byte went to the client (and only streams: a
    non-streamed answer has no "mid-stream" for the client, Kestrel holds it until whole)."""


def moved(place: Callable[[Places], str]) -> Callable[[Stack, Places], None]:
    """Account a's `base_url` moved to a broken place."""
    def arrange(stack: Stack, places: Places) -> None:
        with stack.admin() as admin:
            response = admin.put(f"/admin/accounts/{stack.accounts['a']}",
                                 json={"base_url": place(places)})
            assert response.status_code == 200, response.text
    return arrange


def always(step: Step) -> Callable[[Stack, Places], None]:
    """Account a answered with `step`, every time."""
    def arrange(stack: Stack, places: Places) -> None:
        stack.up.set_default(account_key("a"), step)
    return arrange


FAULTS = [
    Fault("refuses connections", moved(lambda p: p.refusing), None),
    Fault("connect timeout (SYN unanswered)", moved(lambda p: p.unanswered), None),
    Fault("read timeout (accepts, never answers)", always(hang()), "hang"),
    Fault("reset before headers", always(reset_before_headers()), "reset"),
    Fault("reset after headers", always(reset_after_headers()), "reset_after_headers"),
    Fault("reset mid-stream", always(only_streams(reset_mid_stream(STARTED))), "reset_mid",
          True),
    Fault("garbage instead of HTTP", always(garbage()), "garbage"),
    Fault("invalid JSON with status 200", always(invalid_json()), "invalid_json"),
    Fault("SSE cut without message_stop (closed)", always(only_streams(cut_stream_after(STARTED))),
          "cut", True),
    Fault("SSE ends without message_stop (clean)",
          always(only_streams(end_stream_after(STARTED))), "end_early", True),
    Fault("stalls mid-stream (read timeout)", always(only_streams(stall_stream_after(STARTED))),
          "stall", True),
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Kestrel for the module: restoring it before each row keeps the rows independent at
    a fraction of the cost of a process start each."""
    with three_accounts(tmp_path_factory.mktemp("pool")) as stack:
        yield stack


@pytest.fixture
def stack(pool: Stack) -> Stack:
    restore(pool)
    return pool


@pytest.fixture(scope="module")
def places() -> Iterator[Places]:
    with refusing_address() as refusing, unanswered_address() as unanswered:
        yield Places(refusing, unanswered)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.label for f in FAULTS])
def test_one_faulty_account(stack: Stack, places: Places, fault: Fault) -> None:
    """Account a fails, b and c are healthy: no request may notice a fault that struck before
    its first byte, and only the streams already under way on a may end early."""
    fault.arrange(stack, places)
    since = time.time()
    result = burst(stack.url, stack.key, stack.up, fault.label)
    finish_row(stack, fault.label, result)

    struck = [r for r in stack.up.requests_for(account_key("a")) if r.step == fault.step]
    assert fault.step is None or struck, "the fault never happened"
    if fault.mid_stream:
        # Exactly the streams that started on a end early; everything else is served.
        assert all(r.streamed for r in struck)
        assert len(result.of(Verdict.DOCUMENTED, stream=True)) == len(struck), \
            explain(stack, result)
        assert result.served == len(result.sent) - len(struck), explain(stack, result)
        account_states.left_alone_or_short_cooldown(stack.account("a"), since)
    else:
        assert result.served == len(result.sent), explain(stack, result)
        account_states.short_cooldown(stack, "a", since)
    for name in ("b", "c"):
        account_states.healthy(stack.account(name))


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_account_failing_its_own_way(stack: Stack) -> None:
    """a answers 429 with only a reset header, b 529, c 401: nobody can serve, so every request
    gets the 429 whose `retry-after` is when the first account returns: b, after its short
    cooldown, long before a's reset."""
    reset_at = int(time.time()) + 30
    stack.up.set_default(account_key("a"), error(
        429, "rate_limit_error", "Output tokens per minute exceeded",
        headers={"anthropic-ratelimit-output-tokens-remaining": "0",
                 "anthropic-ratelimit-output-tokens-reset": rfc3339(reset_at)}))
    stack.up.set_default(account_key("b"), overloaded())
    stack.up.set_default(account_key("c"), error(401, "authentication_error", "invalid x-api-key"))
    since = time.time()
    result = burst(stack.url, stack.key, stack.up, "429 + 529 + 401")
    finish_row(stack, "429 (reset header) + 529 + 401", result)

    assert result.documented == len(result.sent), explain(stack, result)
    waits = {int(s.headers["retry-after"]) for s in result.sent}
    assert {s.status for s in result.sent} == {429}
    assert max(waits) < reset_at - time.time(), waits  # b's return, not a's reset
    for name in ("a", "b", "c"):
        assert stack.up.requests_for(account_key(name)), f"{name} was never tried"
    account_states.cooling_until(stack.account("a"), reset_at, reset_at + 0.01, "429")
    account_states.invalid(stack.account("c"))
    account_states.short_cooldown(stack, "b", since, last_error="529", probe_served=False)


def test_all_accounts_rate_limited(stack: Stack) -> None:
    """Every account 429s (retry-after 20, 30, 40 s): every request gets the documented 429,
    `retry-after` counting down to a's return, and each account cools until its own reset."""
    resets = {"a": 20, "b": 30, "c": 40}
    for name, seconds in resets.items():
        stack.up.set_default(account_key(name), rate_limited(retry_after=seconds))
    since = time.time()
    result = burst(stack.url, stack.key, stack.up, "all accounts 429")
    until = time.time()
    finish_row(stack, "all accounts 429", result)

    assert result.documented == len(result.sent), explain(stack, result)
    assert {s.status for s in result.sent} == {429}
    waits = {int(s.headers["retry-after"]) for s in result.sent}
    assert min(waits) >= resets["a"] - (until - since) and max(waits) <= resets["a"], waits
    for name, seconds in resets.items():
        assert stack.up.requests_for(account_key(name)), name
        account_states.cooling_until(stack.account(name), since + seconds, until + seconds,
                                     "429")
