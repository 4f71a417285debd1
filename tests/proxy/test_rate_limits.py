"""API rate-limit headroom read from `anthropic-ratelimit-*` headers (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from kestrel.domain import Headroom
from kestrel.proxy.rate_limits import parse_rate_limits

NOW = 1_800_000_000.0
RESET = "2027-01-15T08:00:30Z"
RESET_AT = datetime(2027, 1, 15, 8, 0, 30, tzinfo=UTC).timestamp()


def test_each_limit_an_answer_reports_is_kept_in_order() -> None:
    headers = {
        "anthropic-ratelimit-output-tokens-limit": "8000",
        "anthropic-ratelimit-output-tokens-remaining": "7999",
        "anthropic-ratelimit-output-tokens-reset": RESET,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2027-01-15T09:00:30+01:00",
        "anthropic-ratelimit-unified-status": "allowed",  # the subscription's: not these
        "retry-after": "12",
    }
    limits = parse_rate_limits(headers, now=NOW)
    assert limits is not None and limits.observed_at == NOW
    assert limits.limits == (Headroom("requests", 50, 0, RESET_AT),
                             Headroom("output_tokens", 8000, 7999, RESET_AT))


def test_what_does_not_parse_is_left_out_not_guessed() -> None:
    limits = parse_rate_limits({"anthropic-ratelimit-tokens-limit": "lots",
                                "anthropic-ratelimit-tokens-remaining": "-3",
                                "anthropic-ratelimit-tokens-reset": "2027-01-15T08:00:30",
                                "anthropic-ratelimit-input-tokens-remaining": " 1200 ",
                                "anthropic-ratelimit-input-tokens-reset": "soon"}, now=NOW)
    assert limits is not None
    # a reset without an offset names no moment; only the input tokens' remaining count stands
    assert limits.limits == (Headroom("input_tokens", None, 1200, None),)


def test_an_answer_without_these_headers_reports_nothing() -> None:
    assert parse_rate_limits({}, now=NOW) is None
    assert parse_rate_limits({"anthropic-ratelimit-unified-5h-utilization": "0.2"},
                             now=NOW) is None
    assert parse_rate_limits({"anthropic-ratelimit-tokens-limit": "x"}, now=NOW) is None
