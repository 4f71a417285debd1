"""What the operator sees of failures, through the admin API of a real Kestrel: attempts per
account, why each error happened, the pool's errors apart from the clients', a trace of refused
keys (bounded), and API-key accounts' rate-limit headroom."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_upstream import steps
from support.stack import Stack, account_key, message_body, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=("a", "b")) as stack:
        with stack.admin() as admin:  # a first: the account the failures are scripted on
            admin.put(f"/admin/accounts/{stack.accounts['a']}", json={"priority": 5})
        yield stack


def ask(stack: Stack, **extra: Any) -> httpx.Response:
    with stack.http() as client:
        return client.post("/v1/messages", json=message_body(**extra))


def stats(stack: Stack) -> dict[str, Any]:
    with stack.admin() as admin:
        answer: dict[str, Any] = admin.get("/admin/stats", params={"window": "1h"}).json()
    return answer


def metric(stack: Stack, name: str, **labels: str) -> float:
    with stack.admin() as admin:
        text = admin.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_account_that_only_failed_shows_its_attempts(stack: Stack) -> None:
    """a answers 429, then (reset) 529: b serves both requests. a served nothing, yet its
    attempts, their kinds and its last failure are counted, and the logs' account filter finds
    both requests by a."""
    a, b = stack.accounts["a"], stack.accounts["b"]
    stack.up.script(account_key("a"), [steps.rate_limited(retry_after=30), steps.overloaded()])
    assert ask(stack).status_code == 200
    with stack.admin() as admin:
        assert admin.post(f"/admin/accounts/{a}/reset").status_code == 200
    assert ask(stack).status_code == 200
    rows = stack.logs(expect=2)
    assert [r["account_name"] for r in rows] == ["b", "b"]
    assert [[(t["account_name"], t["status"]) for t in r["attempts"]] for r in rows] == [
        [("a", 529), ("b", 200)], [("a", 429), ("b", 200)]]
    assert rows[1]["attempts"][0]["message"]  # what Anthropic said of the 429
    assert [r["id"] for r in stack.logs(expect=2, account_id=a)] == [r["id"] for r in rows]

    accounts = {row["account_id"]: row for row in stats(stack)["accounts"]}
    assert {k: accounts[a][k] for k in ("requests", "attempts", "served", "failed",
                                        "failures_by_type")} == {
        "requests": 0, "attempts": 2, "served": 0, "failed": 2,
        "failures_by_type": {"overloaded_error": 1, "rate_limit_error": 1}}
    assert accounts[a]["last_failure_at"] == rows[0]["ts"]
    assert (accounts[b]["requests"], accounts[b]["served"], accounts[b]["failed"]) == (2, 2, 0)
    assert metric(stack, "kestrel_upstream_attempts_total", account_id=str(a),
                  outcome="429") == 1
    assert metric(stack, "kestrel_upstream_attempts_total", account_id=str(a),
                  outcome="529") == 1


def test_an_error_relayed_from_upstream_keeps_its_message(stack: Stack) -> None:
    said = "max_tokens: 100000 > 64000, which is the maximum allowed for this model"
    stack.up.script(account_key("a"), [steps.error(400, "invalid_request_error", said)])
    answer = ask(stack)
    assert answer.status_code == 400 and answer.json()["error"]["message"] == said
    (row,) = stack.logs(expect=1)
    assert (row["error_type"], row["error_message"]) == ("invalid_request_error", said)
    assert row["attempts"][0]["message"] == said
    totals = stats(stack)["totals"]
    assert (totals["errors"], totals["pool_errors"], totals["client_errors"]) == (1, 0, 1)


def test_a_429_kestrel_makes_itself_says_why_and_who_comes_back_first(stack: Stack) -> None:
    stack.up.script(account_key("a"), [steps.rate_limited(retry_after=300)])
    stack.up.script(account_key("b"), [steps.rate_limited(retry_after=90)])
    before = time.time()
    answer = ask(stack)
    assert answer.status_code == 429
    told = answer.json()["error"]["message"]
    assert told.startswith("every Anthropic account is rate-limited or cooling down; the first "
                           "is back in ") and "(b" not in told  # names are the operator's
    (row,) = stack.logs(expect=1)
    assert row["error_type"] == "all_cooling_down"
    back = re.search(r"\(b, at (\S+)Z\)", row["error_message"])
    assert back, row["error_message"]
    back_at = time.mktime(time.strptime(back.group(1), "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before + 80 <= back_at <= time.time() + 91
    totals = stats(stack)["totals"]
    assert (totals["pool_errors"], totals["client_errors"]) == (1, 0)
    assert metric(stack, "kestrel_refused_total", reason="all_cooling_down") == 0  # tried first


def test_a_pool_without_accounts_and_refused_keys_are_told_apart(stack: Stack) -> None:
    with stack.admin() as admin:
        for account_id in stack.accounts.values():
            admin.delete(f"/admin/accounts/{account_id}")
        picky = admin.post("/admin/keys", json={"name": "picky",
                                                "models": ["claude-haiku-*"]}).json()
    assert ask(stack).status_code == 503
    with stack.http({"x-api-key": picky["key"]}) as client:
        assert client.post("/v1/messages", json=message_body()).status_code == 403
    rows = {r["error_type"]: r for r in stack.logs(expect=2)}
    assert set(rows) == {"no_accounts", "model_not_allowed"}
    assert rows["no_accounts"]["error_message"].startswith("no Anthropic account is configured")
    assert "claude-haiku-*" in rows["model_not_allowed"]["error_message"]
    totals = stats(stack)["totals"]
    assert (totals["pool_errors"], totals["client_errors"]) == (1, 1)
    assert metric(stack, "kestrel_refused_total", reason="no_accounts") == 1


def test_refused_keys_leave_a_masked_trace_and_a_flood_cannot_fill_the_log(stack: Stack) -> None:
    unknown = "kst_" + "Zq" * 21 + "w9X"
    started = time.monotonic()
    with stack.kestrel.client() as client:
        for _ in range(75):
            answer = client.post("/v1/messages", json=message_body(),
                                 headers={"x-api-key": unknown})
            assert answer.status_code == 401 and answer.headers["x-should-retry"] == "false"
        assert client.post("/v1/messages", json=message_body()).status_code == 401
    elapsed = time.monotonic() - started
    assert metric(stack, "kestrel_refused_total", reason="unknown_key") == 75
    assert metric(stack, "kestrel_refused_total", reason="missing_key") == 1
    time.sleep(0.5)  # the last batch of rows
    rows = stack.logs(expect=60)
    # a burst of 60, then one a second: the missing key's row may be the one left out
    assert 60 <= len(rows) <= 61 + int(elapsed), len(rows)
    traced = [r for r in rows if r["error_type"] == "unknown_key"]
    assert traced and {r["error_message"] for r in traced} == {
        "invalid or revoked API key: kst_…qw9X"}
    assert all(r["key_id"] is None and r["route"] == "/v1/messages" for r in traced)


def test_api_key_accounts_show_their_rate_limit_headroom(stack: Stack) -> None:
    with stack.admin() as admin:
        assert admin.get(f"/admin/accounts/{stack.accounts['a']}").json()["rate_limits"] is None
    assert ask(stack).status_code == 200
    limits = stack.account("a")["rate_limits"]
    assert (limits["requests"]["limit"], limits["requests"]["remaining"]) == (50, 49)
    assert (limits["input_tokens"]["limit"], limits["output_tokens"]["remaining"]) == (40000,
                                                                                      7999)
    assert limits["requests"]["reset_at"].endswith("Z") and "tokens" not in limits
    assert stack.account("b")["rate_limits"] is None  # b was not asked


def test_an_api_key_account_behind_a_gateway_shows_every_answers_usage_windows(
        stack: Stack) -> None:
    """Anthropic sends usage windows to subscriptions only, and an API key's answers are read
    for headroom once a second. A gateway in front of subscriptions (another Kestrel, say)
    sends them to an API key too: once they show up, every answer's are read."""
    def windows(utilization: float) -> dict[str, str]:
        return {"anthropic-ratelimit-unified-status": "allowed",
                "anthropic-ratelimit-unified-5h-status": "allowed",
                "anthropic-ratelimit-unified-5h-utilization": str(utilization),
                "anthropic-ratelimit-unified-5h-reset": str(int(time.time()) + 3600)}

    stack.up.script(account_key("a"), [steps.success(headers=windows(0.42)),
                                       steps.success(headers=windows(0.55))])
    assert ask(stack).status_code == 200
    assert stack.account("a")["usage_windows"]["windows"]["5h"]["utilization"] == 0.42
    assert ask(stack).status_code == 200  # well within the second
    assert stack.account("a")["usage_windows"]["windows"]["5h"]["utilization"] == 0.55
    assert stack.account("b")["usage_windows"] is None


def test_keys_in_use_have_names_of_their_own(stack: Stack) -> None:
    with stack.admin() as admin:
        first = admin.post("/admin/keys", json={"name": "laptop"}).json()
        again = admin.post("/admin/keys", json={"name": "laptop"})
        assert again.status_code == 409
        assert again.json()["error"]["field"] == "name"
        renamed = admin.put(f"/admin/keys/{first['id']}", json={"name": "old laptop"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "old laptop"
        assert admin.post("/admin/keys", json={"name": "laptop"}).status_code == 201
