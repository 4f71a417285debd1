"""How much a client key may use (issue 16): rpm, tpm, max_concurrency, daily tokens, daily and
monthly budgets. The decision and the windows with an injected clock; the meter on a real
database, its limits reached and reset by moving the clock; and through a real Kestrel, each
refusal as the official SDKs raise it, before anything reaches upstream."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anthropic
import httpx
import openai
import pytest

from kestrel.domain import ApiKey, KeyOverLimit, RequestLog
from kestrel.proxy.key_limits import Periods, Standing, Tally, over_limit, periods
from kestrel.proxy.key_meter import KeyMeter
from kestrel.store.database import Database
from kestrel.store.usage import UsageStore

from fake_upstream import success
from support.claude_code import run_claude
from support.cluster import seconds_until
from support.shifted_clock import ShiftedClock
from support.stack import MODEL, Stack, account_key, running_stack

# 2026-12-04 20:30:15 UTC, a Friday.
NOW = datetime(2026, 12, 4, 20, 30, 15, tzinfo=UTC).timestamp()
PARIS = ZoneInfo("Europe/Paris")


def key(**limits: Any) -> ApiKey:
    return ApiKey(id=7, name="k", prefix="kst_abc", created_at=0.0, last_used_at=None,
                  revoked_at=None, **limits)


# --- windows ---------------------------------------------------------------------------------


def test_windows_are_the_calendar_minute_day_and_month_of_the_time_zone() -> None:
    at = periods(NOW, UTC)
    assert (at.minute, at.next_minute) == (NOW - 15, NOW + 45)
    assert (at.day, at.month) == ("2026-12-04", "2026-12")
    assert at.next_day == datetime(2026, 12, 5, tzinfo=UTC).timestamp()
    assert at.next_month == datetime(2027, 1, 1, tzinfo=UTC).timestamp()  # across the year
    paris = periods(NOW, PARIS)  # 21:30 in Paris: the same day, its midnight an hour earlier
    assert (paris.day, paris.zone_name) == ("2026-12-04", "Europe/Paris")
    assert paris.next_day == datetime(2026, 12, 4, 23, tzinfo=UTC).timestamp()
    late = periods(datetime(2026, 12, 4, 23, 30, tzinfo=UTC).timestamp(), PARIS)
    assert late.day == "2026-12-05"  # already tomorrow in Paris


def test_a_day_with_a_clock_change_is_as_long_as_it_is() -> None:
    at = periods(datetime(2026, 10, 25, 12, tzinfo=PARIS).timestamp(), PARIS)
    start = datetime(2026, 10, 25, tzinfo=PARIS).timestamp()
    assert at.next_day - start == 25 * 3600  # summer time ends: 25 hours


# --- the decision ------------------------------------------------------------------------------


def standing(*, minute: Tally | None = None, day: Tally | None = None,
             month: Tally | None = None, in_flight: int = 0) -> Standing:
    return Standing(minute=minute or Tally(), day=day or Tally(), month=month or Tally(),
                    in_flight=in_flight)


def refused(limits: dict[str, Any], now_standing: Standing, at: Periods | None = None
            ) -> KeyOverLimit:
    refusal = over_limit(key(**limits), now_standing, at or periods(NOW, UTC), NOW)
    assert refusal is not None
    return refusal


def test_under_every_limit_nothing_is_refused() -> None:
    limits = key(rpm=10, tpm=1000, max_concurrency=2, daily_tokens=5000, daily_budget_usd=1,
                 monthly_budget_usd=10)
    assert over_limit(limits, standing(minute=Tally(9, 999), day=Tally(0, 4999, 0.99),
                                       month=Tally(0, 0, 9.99), in_flight=1),
                      periods(NOW, UTC), NOW) is None


def test_each_refusal_names_the_limit_its_value_and_when_it_resets() -> None:
    rpm = refused({"rpm": 10}, standing(minute=Tally(10, 0)))
    assert (rpm.status, rpm.type, rpm.reason, rpm.retry_after, rpm.final) == (
        429, "rate_limit_error", "rpm", 45, False)
    assert rpm.message == ("this API key reached its limit of 10 requests per minute (rpm); "
                           "it resets in 45 s")
    tpm = refused({"tpm": 1000}, standing(minute=Tally(1, 1200)))
    assert tpm.message == ("this API key used 1,200 tokens this minute, its limit is 1,000 "
                           "tokens per minute (tpm); it resets in 45 s")
    busy = refused({"max_concurrency": 2}, standing(in_flight=2))
    assert (busy.reason, busy.retry_after) == ("max_concurrency", 1.0)
    assert busy.message == ("this API key already has 2 requests in flight, its limit "
                            "(max_concurrency 2); retry when one finishes")
    tokens = refused({"daily_tokens": 5000}, standing(day=Tally(0, 5000, 0)))
    assert (tokens.reason, tokens.final) == ("daily_tokens", True)
    assert tokens.retry_after == pytest.approx(3 * 3600 + 29 * 60 + 45)
    assert tokens.message == ("this API key used 5,000 tokens today, its daily limit is 5,000 "
                              "(daily_tokens); it resets at 2026-12-05 00:00 UTC (in 3 h 30 min)")
    daily = refused({"daily_budget_usd": 0.5}, standing(day=Tally(0, 0, 0.5012)),
                    periods(NOW, PARIS))
    assert daily.message == ("this API key spent $0.5012 today, its daily budget is $0.5000 "
                             "(daily_budget_usd); it resets at 2026-12-05 00:00 Europe/Paris "
                             "(in 2 h 30 min)")
    monthly = refused({"monthly_budget_usd": 1500}, standing(month=Tally(0, 0, 1500.25)))
    assert (monthly.reason, monthly.final) == ("monthly_budget_usd", True)
    assert monthly.message == ("this API key spent $1,500.25 this month, its monthly budget is "
                               "$1,500.00 (monthly_budget_usd); it resets at 2027-01-01 00:00 "
                               "UTC (in 27 days)")


# --- the meter on a real database, with a clock the test moves ----------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finished(ticket_key: int, *, tokens: int = 0, cost: float = 0.0) -> RequestLog:
    return RequestLog(ts=0.0, request_id="r", route="/v1/messages", status=200,
                      key_id=ticket_key, account_id=1, model=MODEL, input_tokens=tokens,
                      cost_usd=cost)


def test_each_limit_is_reached_then_reset_when_its_window_ends(tmp_path: Path) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "k.db")
        clock = Clock(NOW)
        meter = KeyMeter(UsageStore(db), holder="one", clock=clock)
        try:
            rpm = key(rpm=2)
            for _ in range(2):
                meter.admit(rpm).close(finished(rpm.id))
            with pytest.raises(KeyOverLimit, match=r"\(rpm\)"):
                meter.admit(rpm)
            clock.now = NOW + 45  # the next minute
            meter.admit(rpm).close(finished(rpm.id))

            budget = ApiKey(id=8, name="b", prefix="kst_b", created_at=0, last_used_at=None,
                            revoked_at=None, daily_budget_usd=1.0, monthly_budget_usd=1.5)
            meter.admit(budget).close(finished(budget.id, cost=0.75))
            meter.admit(budget).close(finished(budget.id, cost=0.75))  # started under budget
            with pytest.raises(KeyOverLimit, match=r"\(daily_budget_usd\)"):
                meter.admit(budget)
            await meter.sync()  # shared and read back: the same answer
            with pytest.raises(KeyOverLimit, match=r"\(daily_budget_usd\)"):
                meter.admit(budget)
            clock.now = datetime(2026, 12, 5, 0, 0, 1, tzinfo=UTC).timestamp()  # tomorrow
            with pytest.raises(KeyOverLimit, match=r"\(monthly_budget_usd\)"):
                meter.admit(budget)  # the day's budget is back, the month's is spent
            await meter.sync()  # yesterday now among the month's earlier days
            with pytest.raises(KeyOverLimit, match=r"spent \$1\.50 this month"):
                meter.admit(budget)
            clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC).timestamp()
            meter.admit(budget).close(None)

            busy = key(max_concurrency=2)
            first, second = meter.admit(busy), meter.admit(busy)
            with pytest.raises(KeyOverLimit, match=r"max_concurrency 2"):
                meter.admit(busy)
            first.close(None)
            first.close(None)  # closing twice frees one slot, not two
            third = meter.admit(busy)
            with pytest.raises(KeyOverLimit):
                meter.admit(busy)
            second.close(None)
            third.close(None)
        finally:
            await meter.close()
            await db.close()
    asyncio.run(main())


def test_two_meters_on_one_database_see_each_others_counts_after_a_sync(tmp_path: Path) -> None:
    async def main() -> None:
        db = await Database.open(tmp_path / "k.db")
        clock = Clock(NOW)
        one = KeyMeter(UsageStore(db), holder="one", clock=clock)
        two = KeyMeter(UsageStore(db), holder="two", clock=clock)
        limited = key(rpm=3, max_concurrency=2, daily_tokens=100)
        try:
            held = one.admit(limited)
            one.admit(limited).close(finished(limited.id, tokens=60))
            await one.sync()
            await two.sync()
            standing_two = two.standing(limited.id, two.periods(NOW))
            assert (standing_two.minute.requests, standing_two.day.tokens,
                    standing_two.in_flight) == (2, 60, 1)
            two.admit(limited).close(finished(limited.id, tokens=50))
            with pytest.raises(KeyOverLimit, match=r"\(rpm\)"):
                two.admit(limited)
            held.close(None)
            await one.sync()
            await two.sync()
            assert two.standing(limited.id, two.periods(NOW)).in_flight == 0
            clock.now = NOW + 60
            await two.sync()
            with pytest.raises(KeyOverLimit, match=r"110 tokens today"):
                two.admit(limited)
        finally:
            await one.close()
            await two.close()
            await db.close()
    asyncio.run(main())


# --- through a real Kestrel --------------------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=("a",)) as stack:
        yield stack


def new_key(stack: Stack, **limits: Any) -> dict[str, Any]:
    with stack.admin() as admin:
        # Names tell the keys in use apart: each gets its own.
        created = admin.post("/admin/keys", json={"name": f"limited-{secrets.token_hex(3)}",
                                                  **limits})
        assert created.status_code == 201, created.text
        return dict(created.json())


def claude(stack: Stack, secret: str, **options: Any) -> anthropic.Anthropic:
    return stack.closed_with_stack(anthropic.Anthropic(
        base_url=stack.url, api_key=secret, **{"max_retries": 0, **options}))


def ask(client: anthropic.Anthropic) -> Any:
    return client.messages.create(model=MODEL, max_tokens=16,
                                  messages=[{"role": "user", "content": "hi"}])


def away_from_a_minute_boundary() -> None:
    """rpm and tpm windows are calendar minutes: start a test well inside one."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_rpm_through_the_anthropic_sdk(stack: Stack) -> None:
    away_from_a_minute_boundary()
    limited = new_key(stack, rpm=2)
    assert limited["rpm"] == 2
    client = claude(stack, limited["key"])
    ask(client), ask(client)
    sent = len(stack.up.requests)
    with pytest.raises(anthropic.RateLimitError) as over:
        ask(client)
    assert over.value.body == {"type": "error", "error": {
        "type": "rate_limit_error", "message": over.value.body["error"]["message"]}}
    message = over.value.body["error"]["message"]
    assert message.startswith("this API key reached its limit of 2 requests per minute (rpm); "
                              "it resets in ")
    retry_after = int(over.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 60 and message.endswith(f"in {retry_after} s")
    assert "x-should-retry" not in over.value.response.headers  # waiting helps: let it retry
    assert len(stack.up.requests) == sent
    rows = stack.logs(expect=3, key_id=limited["id"])
    assert sorted((r["status"], r["error_type"]) for r in rows) == [
        (200, None), (200, None), (429, "rpm")]
    with stack.admin() as admin:
        assert 'kestrel_refused_total{reason="rpm"} 1' in admin.get("/metrics").text


def test_tpm_through_the_openai_sdk(stack: Stack) -> None:
    away_from_a_minute_boundary()
    limited = new_key(stack, tpm=5)
    chat = stack.closed_with_stack(openai.OpenAI(base_url=stack.url + "/v1",
                                                 api_key=limited["key"], max_retries=0))
    ask_chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    answer = chat.chat.completions.create(**ask_chat)  # under the limit when it starts
    assert answer.usage is not None and answer.usage.total_tokens > 5
    with pytest.raises(openai.RateLimitError) as over:
        chat.chat.completions.create(**ask_chat)
    body = over.value.body
    assert isinstance(body, dict) and body["type"] == "rate_limit_error"
    assert body["code"] == "rate_limit_exceeded"
    assert body["message"].startswith(f"this API key used {answer.usage.total_tokens} tokens "
                                      "this minute, its limit is 5 tokens per minute (tpm)")


def test_max_concurrency_under_50_parallel_streams(stack: Stack) -> None:
    limited = new_key(stack, max_concurrency=5)
    # Each admitted stream stays open a few seconds.
    stack.up.set_default(account_key("a"), success(event_interval=0.3))
    body = {"model": MODEL, "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}

    def stream(_: int) -> tuple[int, float, str]:
        with stack.http() as client, client.stream(
                "POST", "/v1/messages", json=body,
                headers={"x-api-key": limited["key"]}) as response:
            text = "".join(response.iter_text())
        return response.status_code, time.monotonic(), text

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(stream, range(50)))
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 429]
    assert (len(served), len(refused)) == (5, 45)
    assert all("message_stop" in text for _, _, text in served)
    assert all("(max_concurrency 5)" in text for _, _, text in refused)
    # At once: every refusal was in hand before the first admitted stream ended.
    assert max(ended for _, ended, _ in refused) < min(ended for _, ended, _ in served)
    assert len(stack.up.requests) == 5
    # The slots are free again once the streams ended.
    with stack.http(headers={"x-api-key": limited["key"]}) as client:
        assert client.post("/v1/messages", json=body).status_code == 200


def test_a_daily_budget_is_final_for_the_day_and_the_sdk_does_not_retry(stack: Stack) -> None:
    limited = new_key(stack, daily_budget_usd=0.0001, monthly_budget_usd=100)
    client = claude(stack, limited["key"], max_retries=2)
    ask(client)  # starts under budget, ends above it
    sent = len(stack.up.requests)
    started = time.monotonic()
    with pytest.raises(anthropic.RateLimitError) as over:
        ask(client)
    assert time.monotonic() - started < 1.0  # x-should-retry: no backoff, no second try
    assert over.value.response.headers["x-should-retry"] == "false"
    assert "(daily_budget_usd); it resets at " in over.value.body["error"]["message"]
    assert len(stack.up.requests) == sent
    # The meter shares its counts a few times a second.
    seconds_until(lambda: listed_key(stack, limited["id"])["spent_today_usd"] > 0)
    spent = listed_key(stack, limited["id"])
    assert spent["spent_today_usd"] == spent["spent_this_month_usd"] > 0.0001
    assert spent["tokens_today"] > 0
    with stack.admin() as admin:  # raising the budget lets the key in again at once
        assert admin.put(f"/admin/keys/{limited['id']}",
                         json={"daily_budget_usd": None}).status_code == 200
    assert ask(client).content


def admin_json(stack: Stack, path: str, **params: Any) -> Any:
    with stack.admin() as admin:
        return admin.get(path, params=params).json()


def listed_key(stack: Stack, key_id: int) -> dict[str, Any]:
    return {k["id"]: k for k in admin_json(stack, "/admin/keys")["data"]}[key_id]


def test_limits_are_validated_and_cleared_with_null(stack: Stack) -> None:
    with stack.admin() as admin:
        for body, field in (({"rpm": 0}, "rpm"), ({"tpm": 1.5}, "tpm"),
                            ({"daily_budget_usd": -1}, "daily_budget_usd"),
                            ({"monthly_budget_usd": "10"}, "monthly_budget_usd"),
                            ({"max_concurrency": True}, "max_concurrency")):
            answer = admin.post("/admin/keys", json={"name": "bad", **body})
            assert answer.status_code == 422 and answer.json()["error"]["field"] == field, body
        made = new_key(stack, rpm=60, daily_budget_usd=2.5)
        cleared = admin.put(f"/admin/keys/{made['id']}", json={"rpm": None}).json()
        assert (cleared["rpm"], cleared["daily_budget_usd"]) == (None, 2.5)


def test_usage_by_key_account_and_model_counts_what_was_spent(stack: Stack) -> None:
    client = claude(stack, stack.key)
    for _ in range(3):
        ask(client)
    rows = stack.logs(expect=3)
    assert all(r["priced"] and r["cost_usd"] > 0 for r in rows)
    spent = sum(r["cost_usd"] for r in rows)
    # The meter shares its counts a few times a second.
    seconds_until(lambda: admin_json(stack, "/admin/usage")["totals"]["requests"] == 3)
    by_model = admin_json(stack, "/admin/usage", group_by="model")
    assert [(r["model"], r["requests"]) for r in by_model["data"]] == [(MODEL, 3)]
    assert by_model["totals"]["cost_usd"] == pytest.approx(spent)
    assert by_model["totals"]["input_tokens"] == sum(r["input_tokens"] for r in rows)
    with stack.admin() as admin:
        by_month = admin.get("/admin/usage", params={"group_by": "account",
                                                     "period": "month"}).json()
        assert [r["account"] for r in by_month["data"]] == [stack.accounts["a"]]
        assert by_month["data"][0]["period"] == by_month["to"][:7]
        stats = admin.get("/admin/stats").json()
        assert stats["totals"]["cost_usd"] == pytest.approx(spent)
        for query, field in (({"group_by": "team"}, "group_by"), ({"from": "2026-13-01"}, "from"),
                             ({"from": "2026-12-05", "to": "2026-12-04"}, "to")):
            bad = admin.get("/admin/usage", params=query)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field


def test_an_admission_is_freed_when_the_request_fails_before_upstream(stack: Stack) -> None:
    """A request no account can serve is admitted, then freed when it is refused:
    max_concurrency 1 lets the next one in."""
    limited = new_key(stack, max_concurrency=1)
    with stack.admin() as admin:
        assert admin.put(f"/admin/accounts/{stack.accounts['a']}",
                         json={"enabled": False}).status_code == 200
    with httpx.Client(base_url=stack.url, headers={"x-api-key": limited["key"]}) as client:
        for _ in range(3):
            answer = client.post("/v1/messages", json={"model": MODEL, "max_tokens": 5,
                                                       "messages": []})
            assert answer.status_code == 503, answer.text


# --- resets, through a real Kestrel whose clock the test moves ------------------------------------


def test_limits_reset_when_their_window_ends(tmp_path: Path, shifted: ShiftedClock) -> None:
    """rpm at the next minute, daily tokens at midnight, a monthly budget on the first, each
    refused through an official SDK before and served again after."""
    with running_stack(tmp_path, accounts=("a",), env=shifted.env) as stack:
        per_minute, per_day, per_month = (new_key(stack, **limits) for limits in (
            {"rpm": 1}, {"daily_tokens": 1}, {"monthly_budget_usd": 0.0001}))
        anthropic_minute = claude(stack, per_minute["key"])
        anthropic_month = claude(stack, per_month["key"])
        chat_day = stack.closed_with_stack(openai.OpenAI(
            base_url=stack.url + "/v1", api_key=per_day["key"], max_retries=0))

        def chat() -> Any:
            return chat_day.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}])

        shifted.set(datetime(2026, 12, 31, 23, 58, 20, tzinfo=UTC).timestamp())
        for ask_once in (lambda: ask(anthropic_minute), chat, lambda: ask(anthropic_month)):
            ask_once()  # each starts under its limit and uses it up
        # (the clock runs on from the moment set: on a loaded machine, by some seconds)
        with pytest.raises(anthropic.RateLimitError, match=r"\(rpm\); it resets in \d+ s"):
            ask(anthropic_minute)
        with pytest.raises(openai.RateLimitError, match=r"\(daily_tokens\); it resets at "
                           r"2027-01-01 00:00 UTC \(in \d min\)"):
            chat()
        with pytest.raises(anthropic.RateLimitError, match=r"\(monthly_budget_usd\); it resets "
                           r"at 2027-01-01 00:00 UTC \(in \d min\)"):
            ask(anthropic_month)

        shifted.set(datetime(2026, 12, 31, 23, 59, 10, tzinfo=UTC).timestamp())
        assert ask(anthropic_minute).content  # a new minute
        with pytest.raises(openai.RateLimitError):
            chat()  # still the same day
        shifted.set(datetime(2027, 1, 1, 0, 0, 10, tzinfo=UTC).timestamp())
        assert chat().choices  # a new day
        assert ask(anthropic_month).content  # and a new month
        rows = stack.logs(expect=10)
        assert sorted(r["error_type"] for r in rows if r["status"] == 429) == [
            "daily_tokens", "daily_tokens", "monthly_budget_usd", "rpm"]


# --- what the person at the keyboard sees -------------------------------------------------------


def test_claude_code_shows_a_spent_budget_at_once(stack: Stack, claude_cli: str) -> None:
    """The real CLI: a first prompt served, the next refused with Kestrel's own message, shown
    at once (x-should-retry: false), and nothing but 200s on the upstream side (the CLI hides
    some upstream 400s by retrying with fewer features)."""
    limited = new_key(stack, daily_budget_usd=0.0001)
    first = run_claude(claude_cli, stack.url, limited["key"], "say hi")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Hello from the fake Anthropic upstream" in first.stdout
    served = len(stack.up.requests)
    started = time.monotonic()
    second = run_claude(claude_cli, stack.url, limited["key"], "say hi again")
    assert second.returncode == 1
    assert time.monotonic() - started < 30  # no minutes of backoff
    shown = second.stdout + second.stderr
    assert "429" in shown and "(daily_budget_usd); it resets at " in shown, shown
    assert re.search(r"this API key spent \$0\.\d{4} today, its daily budget is \$0\.0001", shown)
    assert len(stack.up.requests) == served  # refused before upstream
    assert {r.status for r in stack.up.requests} == {200}
