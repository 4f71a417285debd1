"""Every row of the rotation table, affinity, spreading, and cooldowns surviving a restart."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import anthropic
import pytest

from fake_upstream import error, overloaded, rate_limited, stream_error_after
from support.db import raw
from support.stack import Stack, account_key, message_body, running_stack


@pytest.fixture
def stack(ranked_stack: Stack) -> Stack:
    return ranked_stack


def seconds_until(stamp: str | None) -> float:
    assert stamp is not None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()


def post(stack: Stack, **extra: object) -> tuple[int, dict[str, object], dict[str, str]]:
    with stack.http() as client:
        response = client.post("/v1/messages", json=message_body(**extra))
        return response.status_code, response.json(), dict(response.headers)


@pytest.mark.parametrize(
    ("step", "status", "cooldown", "last_error"),
    [
        (rate_limited(retry_after=30), "cooldown", (25, 31), "429 rate_limit_error"),
        (overloaded(), "cooldown", (0.5, 2.5), "529 overloaded_error"),
        (error(500, "api_error", "Internal server error"), "cooldown", (0.5, 2.5), "500"),
        (error(401, "authentication_error", "invalid x-api-key"), "invalid", None, "401"),
        (error(403, "permission_error", "not allowed"), "cooldown", (1790, 1801), "403"),
        (error(402, "billing_error", "pay up"), "exhausted", None, "402"),
        (error(400, "invalid_request_error",
               "Your credit balance is too low to access the Anthropic API."), "exhausted", None,
         "400"),
    ],
)
def test_failing_account_is_cooled_and_the_next_one_serves(
        stack: Stack, step: object, status: str, cooldown: tuple[float, float] | None,
        last_error: str) -> None:
    stack.up.script(account_key("a"), [step])  # type: ignore[list-item]
    code, body, headers = post(stack)
    assert code == 200 and body["type"] == "message"
    assert [r.credential for r in stack.up.requests] == [
        account_key("a"), account_key("b")]
    a = stack.account("a")
    assert a["status"] == status
    assert a["consecutive_failures"] == 1
    assert a["last_error"].startswith(last_error)
    assert account_key("a") not in a["last_error"]
    if cooldown is not None:
        low, high = cooldown
        assert low <= seconds_until(a["cooldown_until"]) <= high
    assert stack.account("b")["status"] == "active"
    # the next request goes straight to b while a is out
    assert post(stack)[0] == 200
    assert stack.served_by() == "b"


def test_client_error_is_returned_and_leaves_the_account_alone(stack: Stack) -> None:
    stack.up.script(account_key("a"), [error(400, "invalid_request_error",
                                             "messages: at least one message is required")])
    code, body, _ = post(stack)
    assert code == 400
    assert body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(stack.up.requests) == 1
    assert stack.account("a")["status"] == "active"
    assert stack.account("a")["consecutive_failures"] == 0


def test_unreachable_account_fails_over(stack: Stack) -> None:
    with stack.admin() as admin:
        admin.put(f"/admin/accounts/{stack.accounts['a']}",
                  json={"base_url": "http://127.0.0.1:9"})  # nothing listens on port 9
    assert post(stack)[0] == 200
    assert stack.served_by() == "b"
    a = stack.account("a")
    assert a["status"] == "cooldown" and a["last_error"]


@pytest.mark.parametrize("stored", ["http://api..example", "http://example.test/\x7f"])
def test_a_stored_base_url_that_cannot_be_used_fails_over(stack: Stack, stored: str) -> None:
    """A base URL from before they were checked as strictly as now (written under the API's
    feet here): a name the resolver refuses, a character no URL may hold. The account fails
    like one that cannot be reached, and the next serves; nothing answers 500."""
    with raw(stack.kestrel.workdir / "kestrel.db") as conn:
        conn.execute("UPDATE accounts SET base_url = ? WHERE name = 'a'", (stored,))
    stack.restart()
    assert post(stack)[0] == 200
    assert stack.served_by() == "b"
    (row,) = stack.logs(expect=1)
    assert [(t["account_name"], t["error_type"]) for t in row["attempts"]] == [
        ("a", "connect"), ("b", None)]
    with stack.admin() as admin:
        admin.post(f"/admin/accounts/{stack.accounts['a']}/reset")
        tested = admin.post(f"/admin/accounts/{stack.accounts['a']}/test")
    assert tested.status_code == 200
    assert (tested.json()["ok"], tested.json()["error_type"]) == (False, "connect")


def test_all_accounts_rate_limited_gives_429_with_retry_after(stack: Stack) -> None:
    stack.up.script(account_key("a"), [rate_limited(retry_after=40)])
    stack.up.script(account_key("b"), [rate_limited(retry_after=20)])
    client = stack.sdk()
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(**message_body())
    assert raised.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 18 <= int(raised.value.response.headers["retry-after"]) <= 21
    assert len(stack.up.requests) == 2
    # while both cool down, nothing goes upstream at all
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(**message_body())
    assert len(stack.up.requests) == 2


def test_all_invalid_or_none_gives_503(stack: Stack) -> None:
    for name in ("a", "b"):
        stack.up.script(account_key(name), [error(401, "authentication_error", "bad key")])
    code, body, _ = post(stack)
    assert code == 503
    assert "invalid" in body["error"]["message"]  # type: ignore[index]
    with stack.admin() as admin:
        for account_id in stack.accounts.values():
            admin.delete(f"/admin/accounts/{account_id}")
    code, body, _ = post(stack)
    assert code == 503 and body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "POST /admin/accounts" in body["error"]["message"]  # type: ignore[index]


def test_reset_brings_an_account_back(stack: Stack) -> None:
    stack.up.script(account_key("a"), [error(401, "authentication_error", "bad key")])
    post(stack)
    assert stack.account("a")["status"] == "invalid"
    with stack.admin() as admin:
        reset = admin.post(f"/admin/accounts/{stack.accounts['a']}/reset").json()
    assert reset["status"] == "active" and reset["last_error"] is None
    # a new conversation: the first one is pinned to b, which served it
    with stack.http() as client:
        assert client.post("/v1/messages", json=message_body("another")).status_code == 200
    assert stack.served_by() == "a"


def test_error_event_mid_stream_is_forwarded_and_cools_the_account(stack: Stack) -> None:
    stack.up.script(account_key("a"), [stream_error_after(3, "overloaded_error")])
    client = stack.sdk()
    with pytest.raises(anthropic.APIStatusError), client.messages.stream(
            **message_body()) as stream:
        for _ in stream:
            pass
    assert len(stack.up.requests) == 1  # started streams are never retried
    # The stream's end is judged as Kestrel finishes relaying. The cooldown itself lasts about a
    # second, which a loaded machine can spend between two polls: its failure count stays.
    deadline = time.monotonic() + 5
    while stack.account("a")["consecutive_failures"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    account = stack.account("a")
    assert account["consecutive_failures"] == 1 and "overloaded" in account["last_error"]


def test_affinity_keeps_a_conversation_and_fails_over_when_its_account_cools(
        stack: Stack) -> None:
    with stack.admin() as admin:  # equal priority: only affinity keeps the conversation put
        admin.put(f"/admin/accounts/{stack.accounts['a']}", json={"priority": 0})
    session = {"x-claude-code-session-id": "conversation-1"}
    with stack.http(headers=session) as client:
        for _ in range(5):
            assert client.post("/v1/messages", json=message_body()).status_code == 200
        first = {r.credential for r in stack.up.requests}
        assert len(first) == 1
        pinned = stack.served_by()
        other = "b" if pinned == "a" else "a"
        stack.up.script(account_key(pinned), [rate_limited(retry_after=60)])
        for _ in range(3):
            assert client.post("/v1/messages", json=message_body()).status_code == 200
    assert [stack.served_by(i) for i in range(5, 9)] == [pinned, other, other, other]


def test_balanced_rotation_spreads_conversations(tmp_path: Path) -> None:
    """New conversations spread over equal accounts as a hash spreads them (100 over 4: 25
    each give or take a few), and each one's next request goes back to its account."""
    with running_stack(tmp_path, accounts=("w", "x", "y", "z")) as stack:
        with stack.http() as client:
            for _ in range(2):
                for n in range(100):
                    response = client.post("/v1/messages",
                                           json=message_body(f"conversation {n}"))
                    assert response.status_code == 200
        first = [stack.served_by(i) for i in range(100)]
        again = [stack.served_by(i) for i in range(100, 200)]
    assert again == first
    counts = Counter(first)
    assert set(counts) == {"w", "x", "y", "z"}
    assert all(10 <= count <= 40 for count in counts.values()), counts


def test_fill_first_stays_on_one_account_until_it_cools(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("w", "x"), env={"ROTATION": "fill-first"}) as stack:
        with stack.http() as client:
            for n in range(6):
                client.post("/v1/messages", json=message_body(f"conversation {n}"))
            stack.up.script(account_key("w"), [rate_limited(retry_after=60)])
            for n in range(3):
                client.post("/v1/messages", json=message_body(f"later {n}"))
        served = [stack.served_by(i) for i in range(len(stack.up.requests))]
    assert served == ["w"] * 7 + ["x"] * 3


def test_cooldown_survives_a_restart(stack: Stack) -> None:
    stack.up.script(account_key("a"), [rate_limited(retry_after=300)])
    assert post(stack)[0] == 200
    stack.restart()
    a = stack.account("a")
    assert a["status"] == "cooldown" and 290 <= seconds_until(a["cooldown_until"]) <= 301
    assert post(stack)[0] == 200
    assert stack.served_by() == "b"
