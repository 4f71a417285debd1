"""What a request costs (issue 16): the shipped table, the arithmetic to the cent's thousandth,
an operator's PRICES file, and the cost each request log row carries through a real Kestrel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kestrel.config import load_settings
from kestrel.domain import ConfigError
from kestrel.prices import PRICES, Tokens, cost, parse_prices, price_of
from kestrel.proxy.usage import StreamUsageTracker, summarize_message

from fake_upstream import success
from fake_upstream.replies import DEFAULT_MODELS
from support.stack import account_key, running_stack


def test_the_table_prices_every_model_the_fake_upstream_lists() -> None:
    for model, _, _ in DEFAULT_MODELS:
        assert price_of(PRICES, model) is not None, model


def test_a_known_request_costs_the_hand_computed_figure() -> None:
    # Sonnet 4.6 at $3 / $15, cache writes $3.75 (5 min) and $6 (1 h), cache reads $0.30:
    # 1,234×3 + 567×15 + 1,000×3.75 + 500×6 + 20,000×0.30 = 24,957 micro-dollars.
    tokens = Tokens(input=1_234, output=567, cache_write=1_500, cache_write_1h=500,
                    cache_read=20_000)
    spent = cost(PRICES, "claude-sonnet-4-6", tokens)
    assert spent.priced and round(spent.usd, 5) == 0.02496  # to the cent's thousandth
    assert spent.usd == pytest.approx(0.024957)
    dated = cost(PRICES, "claude-haiku-4-5-20251001", Tokens(input=1_000_000, output=1_000_000))
    assert dated.usd == pytest.approx(6.0)  # $1 + $5: a release date finds its model


def test_long_context_rates_apply_to_the_whole_request_past_200k_input() -> None:
    at_threshold = Tokens(input=150_000, cache_read=50_000, output=1_000)
    assert cost(PRICES, "claude-sonnet-4-5", at_threshold).usd == pytest.approx(
        (150_000 * 3 + 50_000 * 0.3 + 1_000 * 15) / 1e6)
    past = Tokens(input=150_001, cache_read=50_000, output=1_000)
    assert cost(PRICES, "claude-sonnet-4-5", past).usd == pytest.approx(
        (150_001 * 6 + 50_000 * 0.6 + 1_000 * 22.5) / 1e6)
    assert cost(PRICES, "claude-sonnet-4-6", past).usd == pytest.approx(  # flat for 4.6
        (150_001 * 3 + 50_000 * 0.3 + 1_000 * 15) / 1e6)


def test_an_unknown_model_costs_zero_and_says_so() -> None:
    unknown = cost(PRICES, "claude-future-9", Tokens(input=10, output=10))
    assert (unknown.usd, unknown.priced) == (0.0, False)
    assert cost(PRICES, "claude-opus-4", Tokens(input=1)).priced  # not a prefix of opus-4-7:
    assert cost(PRICES, "claude-opus-4-7-fast", Tokens(input=1)).priced is False
    assert cost(PRICES, None, Tokens()).priced  # nothing used, nothing billed


def test_a_prices_file_adds_and_replaces_models(tmp_path: Path) -> None:
    table = parse_prices(json.dumps({"claude-sonnet-4-6": {"input": 2, "output": 10},
                                     "my-model": {"input": 1, "output": 2, "cache_read": 0.5,
                                                  "long_context": {"input": 4, "output": 8}}}))
    assert table["claude-sonnet-4-6"].cache_write_1h == 4  # 2× input unless given
    assert table["my-model"].cache_read == 0.5
    assert table["my-model"].long_context is not None
    for text, message in (("[]", "must be a JSON object"), ("{", "not JSON"),
                          ('{"m": {"input": 1}}', "m: output is required"),
                          ('{"m": {"input": -1, "output": 1}}', "m: input must be a number"),
                          ('{"m": {"input": 1, "output": 1, "cached": 1}}',
                           "m: unknown field 'cached'")):
        with pytest.raises(ValueError, match=message):
            parse_prices(text)

    prices = tmp_path / "prices.json"
    prices.write_text('{"claude-sonnet-4-6": {"input": 2, "output": 10}}')
    env = {"ADMIN_KEY": "a" * 20, "ENCRYPTION_KEY": "5a" * 32, "DB_PATH": str(tmp_path / "k.db")}
    settings = load_settings({**env, "PRICES": str(prices), "TIME_ZONE": "Europe/Paris"})
    assert settings.prices["claude-sonnet-4-6"].input == 2
    assert settings.prices["claude-opus-4-7"] == PRICES["claude-opus-4-7"]
    assert str(settings.time_zone) == "Europe/Paris"
    with pytest.raises(ConfigError) as bad:
        load_settings({**env, "PRICES": str(tmp_path / "missing.json"), "TIME_ZONE": "Mars/Base"})
    assert bad.value.problems == [
        "TIME_ZONE: 'Mars/Base' is not a time zone this system knows (an IANA name such as "
        "Europe/Paris, or UTC)",
        f"PRICES: cannot read {str(tmp_path / 'missing.json')!r}: No such file or directory"]


def test_the_hour_long_cache_writes_are_read_from_the_usage() -> None:
    usage = {"input_tokens": 5, "output_tokens": 7, "cache_creation_input_tokens": 300,
             "cache_read_input_tokens": 0,
             "cache_creation": {"ephemeral_5m_input_tokens": 100,
                                "ephemeral_1h_input_tokens": 200}}
    body = json.dumps({"type": "message", "model": "m", "stop_reason": "end_turn",
                       "usage": usage}).encode()
    assert summarize_message(body).usage.cache_creation_1h_tokens == 200
    tracker = StreamUsageTracker()
    start = {"type": "message_start", "message": {"model": "m", "usage": usage}}
    tracker.feed(f"event: message_start\ndata: {json.dumps(start)}\n\n".encode())
    assert (tracker.summary().usage.cache_creation_1h_tokens, tracker.garbage) == (200, 0)
    tracker.feed(b'event: message_delta\ndata: {"type": "message_delta", "delta": {}, '
                 b'"usage": {"output_tokens": 9, "cache_creation": 5}}\n\n')
    assert tracker.garbage == 1  # a malformed split is counted, never raised


def test_each_log_row_carries_its_cost(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("a",)) as stack:
        stack.up.script(account_key("a"), [success(usage={"input_tokens": 1_000,
                                                          "output_tokens": 2_000,
                                                          "cache_read_input_tokens": 10_000})])
        client = stack.sdk()
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=16,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            list(stream)
        client.messages.create(model="claude-future-9", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
        rows = {r["model"]: r for r in stack.logs(expect=2)}
        # 1,000×3 + 2,000×15 + 10,000×0.30 = 36,000 micro-dollars, from the end of the stream.
        assert rows["claude-sonnet-4-6"]["cost_usd"] == pytest.approx(0.036)
        assert (rows["claude-future-9"]["cost_usd"], rows["claude-future-9"]["priced"]) == (
            0.0, False)
        warned = [r for r in stack.kestrel.records()
                  if r.get("event", {}).get("name") == "model_unpriced"]
        assert [r["event"]["model"] for r in warned] == ["claude-future-9"]
        client.messages.create(model="claude-future-9", max_tokens=16,
                               messages=[{"role": "user", "content": "hi"}])
        stack.logs(expect=3)
        assert len([r for r in stack.kestrel.records()
                    if r.get("event", {}).get("name") == "model_unpriced"]) == 1  # once
