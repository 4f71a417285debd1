"""The rotation table: one case per row and per rate-limit header kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kestrel.domain import AccountState
from kestrel.proxy.cooldown import (
    DEFAULT_COOLDOWN_MAX,
    FORBIDDEN_COOLDOWN,
    MAX_LAST_ERROR,
    SHORT_BACKOFF_CAP,
    AccountUpdate,
    Outcome,
    Verdict,
    backoff,
    classify_response,
    classify_stream_error,
    classify_transport_error,
    parse_reset,
    parse_retry_after,
)

NOW = 1_760_000_000.0  # 2025-10-09T08:53:20Z


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def body(kind: str, message: str, **extra: object) -> bytes:
    error: dict[str, object] = {"type": kind, "message": message, **extra}
    return json.dumps({"type": "error", "error": error, "request_id": "req_1"}).encode()


def classify(
    status: int,
    headers: dict[str, str] | None = None,
    payload: bytes | None = None,
    *,
    failures: int = 0,
    jitter: float = 0.0,
    cooldown_max: float = DEFAULT_COOLDOWN_MAX,
) -> Outcome:
    return classify_response(
        status,
        headers or {},
        payload,
        now=NOW,
        failures=failures,
        jitter=jitter,
        cooldown_max=cooldown_max,
    )


def until(outcome: Outcome) -> float:
    assert outcome.update is not None and outcome.update.cooldown_until is not None
    return outcome.update.cooldown_until - NOW


# --- one case per row -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 204])
def test_2xx_serves_and_resets_the_account(status: int) -> None:
    outcome = classify(status, failures=4)
    assert outcome == Outcome(Verdict.SERVED, AccountUpdate(AccountState.OK, None, 0, None))


def test_429_without_headers_backs_off_from_one_second() -> None:
    outcome = classify(429, {}, body("rate_limit_error", "slow down"), failures=0)
    assert outcome.verdict is Verdict.RETRY_NEXT
    assert outcome.update == AccountUpdate(
        AccountState.OK, NOW + 1.0, 1, "429 rate_limit_error: slow down"
    )


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529, 501])
def test_server_errors_short_backoff(status: int) -> None:
    outcome = classify(status, {}, body("overloaded_error", "Overloaded"), failures=2)
    assert outcome.verdict is Verdict.RETRY_NEXT
    assert outcome.update is not None
    assert outcome.update.state is AccountState.OK
    assert until(outcome) == 4.0
    assert outcome.update.consecutive_failures == 3
    assert outcome.update.last_error == f"{status} overloaded_error: Overloaded"


def test_server_error_backoff_is_capped_at_a_minute() -> None:
    assert until(classify(529, failures=40, jitter=0.99)) == SHORT_BACKOFF_CAP


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("connect", "connect error"),
        ("timeout", "timeout before the first byte"),
        ("protocol", "protocol error"),
        ("weird", "transport error (weird)"),
    ],
)
def test_transport_errors_short_backoff(kind: str, label: str) -> None:
    outcome = classify_transport_error(kind, now=NOW, failures=1, jitter=0.0)
    assert outcome == Outcome(
        Verdict.RETRY_NEXT, AccountUpdate(AccountState.OK, NOW + 2.0, 2, label)
    )


def test_401_marks_the_account_invalid() -> None:
    outcome = classify(401, {}, body("authentication_error", "invalid x-api-key"))
    assert outcome == Outcome(
        Verdict.RETRY_NEXT,
        AccountUpdate(AccountState.INVALID, None, 1, "401 authentication_error: invalid x-api-key"),
    )


def test_403_cools_down_half_an_hour_and_keeps_the_error() -> None:
    message = "Your account does not have access to this model"
    outcome = classify(403, {"retry-after": "5"}, body("permission_error", message), failures=3)
    assert outcome.verdict is Verdict.RETRY_NEXT
    assert outcome.update == AccountUpdate(
        AccountState.OK, NOW + FORBIDDEN_COOLDOWN, 4, f"403 permission_error: {message}"
    )


def test_402_exhausts_the_account() -> None:
    outcome = classify(402, {}, body("billing_error", "Payment required"))
    assert outcome.verdict is Verdict.RETRY_NEXT
    assert outcome.update == AccountUpdate(
        AccountState.EXHAUSTED, NOW + DEFAULT_COOLDOWN_MAX, 1, "402 billing_error: Payment required"
    )


@pytest.mark.parametrize(
    "message",
    [
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
        "You have reached your specified API usage limits. You will regain access on "
        "2026-04-01 at 00:00 UTC.",
    ],
)
def test_billing_400_exhausts_the_account(message: str) -> None:
    outcome = classify(400, {}, body("invalid_request_error", message), cooldown_max=600)
    assert outcome.verdict is Verdict.RETRY_NEXT
    assert outcome.update is not None
    assert outcome.update.state is AccountState.EXHAUSTED
    assert until(outcome) == 600


def test_ordinary_400_goes_back_to_the_client_untouched() -> None:
    message = 'messages: roles must alternate between "user" and "assistant"'
    outcome = classify(400, {}, body("invalid_request_error", message))
    assert outcome == Outcome(Verdict.RETURN_TO_CLIENT, None)


@pytest.mark.parametrize("status", [400, 404, 405, 409, 413, 422, 408])
def test_other_4xx_are_the_clients(status: int) -> None:
    assert classify(status, {}, body("invalid_request_error", "no")).update is None
    assert classify(status, {}, None).verdict is Verdict.RETURN_TO_CLIENT


def test_spend_limit_429_exhausts_rather_than_cools() -> None:
    payload = body(
        "rate_limit_error",
        "You have reached your monthly spend limit",
        details={"error_code": "enforced_spend_limit_reached"},
    )
    outcome = classify(429, {}, payload)
    assert outcome.update is not None
    assert outcome.update.state is AccountState.EXHAUSTED
    assert until(outcome) == DEFAULT_COOLDOWN_MAX


@pytest.mark.parametrize("error_type", ["overloaded_error", "api_error", "timeout_error"])
def test_mid_stream_server_error_short_backoff(error_type: str) -> None:
    update = classify_stream_error(
        error_type, now=NOW, failures=0, jitter=0.0, message="Overloaded"
    )
    assert update == AccountUpdate(
        AccountState.OK, NOW + 1.0, 1, f"stream {error_type}: Overloaded"
    )


def test_mid_stream_rate_limit_backs_off() -> None:
    update = classify_stream_error("rate_limit_error", now=NOW, failures=3, jitter=0.0)
    assert update == AccountUpdate(AccountState.OK, NOW + 8.0, 4, "stream rate_limit_error")


def test_mid_stream_request_error_leaves_the_account_alone() -> None:
    assert classify_stream_error("invalid_request_error", now=NOW, failures=0, jitter=0.0) is None


# --- 429 headers, one kind at a time ----------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert until(classify(429, {"retry-after": "30"})) == 30


def test_retry_after_http_date() -> None:
    assert until(classify(429, {"retry-after": http_date(NOW + 120)})) == 120


def test_retry_after_ms() -> None:
    assert until(classify(429, {"retry-after-ms": "2500"})) == 2.5


def test_rfc3339_reset_of_an_exhausted_window() -> None:
    headers = {
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 42),
    }
    assert until(classify(429, headers)) == 42


def test_rfc3339_reset_with_fraction_and_offset() -> None:
    headers = {"anthropic-ratelimit-input-tokens-reset": "2025-10-09T10:54:00.500+02:00"}
    assert until(classify(429, headers)) == 40.5


def test_unified_epoch_reset() -> None:
    headers = {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(int(NOW + 900)),
    }
    assert until(classify(429, headers)) == 900


def test_only_limiting_windows_push_the_cooldown() -> None:
    headers = {
        # requests: still room, so its (later) reset is not the reason for this 429
        "anthropic-ratelimit-requests-remaining": "37",
        "anthropic-ratelimit-requests-reset": rfc3339(NOW + 50),
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": rfc3339(NOW + 20),
        # unified: the 7-day window is fine, the 5-hour one is rejected
        "anthropic-ratelimit-unified-7d-status": "allowed",
        "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 3000)),
        "anthropic-ratelimit-unified-5h-status": "rejected",
        "anthropic-ratelimit-unified-5h-reset": str(int(NOW + 600)),
    }
    assert until(classify(429, headers)) == 600


def test_latest_of_all_limiting_sources_wins() -> None:
    headers = {
        "retry-after": "10",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": rfc3339(NOW + 45),
        "anthropic-ratelimit-unified-reset": str(int(NOW + 30)),  # no status: counts
    }
    assert until(classify(429, headers)) == 45


def test_reset_without_remaining_header_counts() -> None:
    assert until(classify(429, {"anthropic-ratelimit-requests-reset": rfc3339(NOW + 15)})) == 15


def test_cap_keeps_a_stale_window_from_parking_the_account() -> None:
    headers = {
        "anthropic-ratelimit-unified-7d-status": "rejected",
        "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 5 * 86400)),
    }
    assert until(classify(429, headers)) == DEFAULT_COOLDOWN_MAX
    assert until(classify(429, headers, cooldown_max=120)) == 120
    assert until(classify(429, {"retry-after": "999999"})) == DEFAULT_COOLDOWN_MAX


def test_past_or_unreadable_deadlines_fall_back_to_backoff() -> None:
    headers = {
        "retry-after": "soon",
        "anthropic-ratelimit-tokens-reset": rfc3339(NOW - 30),
        "anthropic-ratelimit-unified-reset": "garbage",
    }
    assert until(classify(429, headers, failures=2)) == 4.0


def test_rate_limit_backoff_doubles_up_to_the_cap() -> None:
    waits = [until(classify(429, failures=n)) for n in range(14)]
    assert waits[:5] == [1, 2, 4, 8, 16]
    assert waits[-1] == DEFAULT_COOLDOWN_MAX
    assert all(a <= b for a, b in zip(waits, waits[1:], strict=False))


# --- backoff arithmetic -----------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("jitter", [0.0, 0.3, 0.999999])
def test_backoff_doubles_and_jitter_stays_within_a_quarter(failures: int, jitter: float) -> None:
    base = 2.0**failures
    wait = backoff(1.0, failures, jitter, cap=1e9)
    assert base <= wait < base * 1.25
    assert wait == pytest.approx(base * (1 + 0.25 * jitter))


def test_backoff_cap_and_huge_failure_counts() -> None:
    assert backoff(1.0, 10_000, 0.5, cap=60.0) == 60.0
    assert backoff(1.0, -3, 0.0, cap=60.0) == 1.0
    assert backoff(1.0, 0, 7.0, cap=60.0) == 1.25  # out-of-range jitter is clamped


# --- parsing and last_error -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", NOW + 30),
        (" 1.5 ", NOW + 1.5),
        ("0", NOW),
        (http_date(NOW + 60), NOW + 60),
        ("Thu, 09 Oct 2025 08:54:20 GMT", NOW + 60),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        ("tomorrow", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-10-09T08:54:20Z", NOW + 60),
        ("2025-10-09T08:54:20", NOW + 60),  # no offset: UTC
        (str(int(NOW + 60)), NOW + 60),
        ("junk", None),
        ("", None),
    ],
)
def test_parse_reset(value: str, expected: float | None) -> None:
    assert parse_reset(value) == expected


def test_last_error_is_truncated_and_single_line() -> None:
    outcome = classify(529, {}, body("overloaded_error", "line one\nline two " + "x" * 1000))
    assert outcome.update is not None and outcome.update.last_error is not None
    last_error = outcome.update.last_error
    assert len(last_error) == MAX_LAST_ERROR
    assert last_error.startswith("529 overloaded_error: line one line two xxx")
    assert "\n" not in last_error


def test_last_error_never_holds_a_credential() -> None:
    message = "invalid x-api-key sk-ant-api03-SECRETSECRET and Authorization: Bearer tok123"
    outcome = classify(401, {}, body("authentication_error", message))
    assert outcome.update is not None and outcome.update.last_error is not None
    assert "SECRET" not in outcome.update.last_error
    assert "tok123" not in outcome.update.last_error


@pytest.mark.parametrize("payload", [None, b"", b"<html>502 Bad Gateway</html>", b"[1]", b"{}"])
def test_last_error_from_an_unreadable_body_is_just_the_status(payload: bytes | None) -> None:
    outcome = classify(502, {}, payload)
    assert outcome.update is not None
    assert outcome.update.last_error == "502"
