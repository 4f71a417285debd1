"""The pure parts of OAuth, table by table: PKCE, URLs, pasted codes, links, token answers,
refresh timing, usage windows, and how windows steer selection and cooldowns."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from kestrel.domain import (
    Account,
    AccountState,
    AccountType,
    ClientError,
    Credential,
    UsageWindow,
    UsageWindows,
)
from kestrel.oauth.flow import OAuthConfig, authorize_url, code_challenge, new_secret
from kestrel.oauth.flow import parse_pasted_code as parse
from kestrel.oauth.links import link_key, link_valid, signed_link
from kestrel.oauth.refresher import expired, refresh_backoff, refresh_due
from kestrel.oauth.tokens import InvalidGrant, TokenEndpointError, parse_token_response
from kestrel.oauth.windows import headroom, parse_usage_windows
from kestrel.proxy.cooldown import classify_response
from kestrel.proxy.selection import Rotation, attempt_order

from support.accounts import make_account

NOW = 1_800_000_000.0
CONFIG = OAuthConfig(client_id="cid", auth_url="https://auth.test/oauth/authorize",
                     token_url="https://auth.test/v1/oauth/token",
                     scopes="user:profile user:inference",
                     redirect_uri="http://localhost:8080/api/oauth/callback",
                     manual_redirect_uri="https://auth.test/oauth/code/callback")


def test_pkce_matches_rfc_7636_appendix_b_and_secrets_are_fresh() -> None:
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    assert all(len(s) == 43 and "=" not in s for s in secrets)


@pytest.mark.parametrize("show_code", [False, True])
def test_authorize_url_carries_every_parameter(show_code: bool) -> None:
    url = authorize_url(CONFIG, state="st", verifier="v" * 43,
                        redirect_uri=CONFIG.redirect_uri, show_code=show_code)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CONFIG.auth_url
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        **({"code": "true"} if show_code else {}),
        "client_id": "cid", "response_type": "code", "redirect_uri": CONFIG.redirect_uri,
        "scope": "user:profile user:inference", "code_challenge": code_challenge("v" * 43),
        "code_challenge_method": "S256", "state": "st"}


@pytest.mark.parametrize(("pasted", "expected"), [
    ("abc123#st4te", ("abc123", "st4te")),
    ("  abc123#st4te\n", ("abc123", "st4te")),
    ("abc123", ("abc123", None)),
    ("https://platform.claude.com/oauth/code/callback?code=abc&state=xyz", ("abc", "xyz")),
    ("http://localhost:8080/api/oauth/callback?state=xyz&code=abc", ("abc", "xyz")),
])
def test_pasted_codes_are_read_in_every_form(pasted: str, expected: tuple[str, str]) -> None:
    assert parse(pasted) == expected


@pytest.mark.parametrize("pasted", ["", "   ", "#state", "two words#x", "x" * 5000,
                                    "https://example.test/callback?state=only"])
def test_what_is_not_a_code_is_refused(pasted: str) -> None:
    with pytest.raises(ClientError) as raised:
        parse(pasted)
    assert raised.value.field == "code"


def test_signed_links_work_for_their_name_and_two_minutes_only() -> None:
    key = link_key("admin-key-0123456789")
    url, expires = signed_link(key, "work", now=NOW)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert urlsplit(url).path == "/api/oauth/authorize" and query["name"] == "work"
    assert expires == int(NOW + 120)
    assert link_valid(key, "work", query["expires"], query["sig"], now=NOW + 119)
    assert not link_valid(key, "work", query["expires"], query["sig"], now=NOW + 121)
    assert not link_valid(key, "other", query["expires"], query["sig"], now=NOW)
    assert not link_valid(key, "work", str(expires + 600), query["sig"], now=NOW)
    assert not link_valid(key, "work", query["expires"], query["sig"][:-1] + "A", now=NOW)
    assert not link_valid(link_key("another-admin-key-000"), "work", query["expires"],
                          query["sig"], now=NOW)
    assert not link_valid(key, "work", "-1", query["sig"], now=NOW)


ACCESS = "sk-ant-oat01-" + "a" * 40
REFRESH = "sk-ant-ort01-" + "r" * 40


def test_a_token_answer_gives_tokens_expiry_and_identity() -> None:
    body = (b'{"access_token": "%s", "refresh_token": "%s", "expires_in": 28800, '
            b'"token_type": "Bearer", "account": {"email_address": "me@example.test"}, '
            b'"organization": {"uuid": "org-1", "name": "Acme"}}' % (ACCESS.encode(),
                                                                    REFRESH.encode()))
    grant = parse_token_response(200, {}, body, now=NOW)
    assert (grant.access_token, grant.refresh_token) == (ACCESS, REFRESH)
    assert (grant.expires_at, grant.obtained_at) == (NOW + 28800, NOW)
    assert (grant.email, grant.organization) == ("me@example.test", "Acme")
    assert ACCESS not in repr(grant) and REFRESH not in repr(grant)
    unrotated = parse_token_response(200, {}, b'{"access_token": "x", "expires_in": 60}',
                                     now=NOW)
    assert unrotated.credential(previous_refresh_token=REFRESH) == Credential(
        access_token="x", refresh_token=REFRESH, expires_at=NOW + 60, obtained_at=NOW)
    only_uuid = parse_token_response(200, {}, b'{"access_token": "x", "organization": '
                                     b'{"uuid": "org-1"}, "expires_in": "soon"}', now=NOW)
    assert (only_uuid.organization, only_uuid.expires_at) == ("org-1", None)


@pytest.mark.parametrize(("status", "headers", "body", "error", "retry_after"), [
    (400, {}, b'{"error": "invalid_grant", "error_description": "Refresh token not found"}',
     InvalidGrant, None),
    (429, {"retry-after": "42"}, b'{"error": "rate_limited"}', TokenEndpointError, 42.0),
    (429, {"retry-after": "Fri, 15 Jan 2027 08:00:20 GMT"}, b"", TokenEndpointError, 20.0),
    (500, {}, b"<html>oops</html>", TokenEndpointError, None),
    (404, {}, b'{"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}',
     TokenEndpointError, None),
    (200, {}, b'{"refresh_token": "r"}', TokenEndpointError, None),
    (200, {}, b"[]", TokenEndpointError, None),
])
def test_token_errors_say_what_happened(
        status: int, headers: dict[str, str], body: bytes, error: type[TokenEndpointError],
        retry_after: float | None) -> None:
    with pytest.raises(error) as raised:
        parse_token_response(status, headers, body, now=NOW)  # NOW is 08:00:00 GMT that day
    assert type(raised.value) is error
    assert raised.value.retry_after == retry_after
    assert str(status) in raised.value.message or error is InvalidGrant
    assert raised.value.status == (400 if error is InvalidGrant else 502)


def test_token_error_text_is_cleaned_of_secrets() -> None:
    body = b'{"error": "invalid_request", "error_description": "bad token %s"}' % ACCESS.encode()
    with pytest.raises(TokenEndpointError) as raised:
        parse_token_response(400, {}, body, now=NOW)
    assert ACCESS not in str(raised.value) and "[redacted]" in str(raised.value)


@pytest.mark.parametrize(("obtained", "expires", "now", "due"), [
    (NOW, NOW + 28800, NOW + 0.79 * 28800, False),   # 8 h token: due at 80 %
    (NOW, NOW + 28800, NOW + 0.80 * 28800, True),
    (NOW, NOW + 600, NOW + 299, False),              # 10 min token: due 5 min before expiry
    (NOW, NOW + 600, NOW + 300, True),
    (NOW, NOW + 60, NOW, True),                      # shorter than the lead: due at once
    (None, NOW + 3600, NOW + 3299, False),           # unknown issue time: the 5 min rule only
    (None, NOW + 3600, NOW + 3300, True),
    (None, None, NOW + 10**9, False),                # unknown expiry: only a 401 refreshes
])
def test_refresh_is_due_from_5_minutes_before_or_at_80_percent(
        obtained: float | None, expires: float | None, now: float, due: bool) -> None:
    credential = Credential(access_token="a", expires_at=expires, obtained_at=obtained)
    assert refresh_due(credential, now) is due


def test_expiry_keeps_a_safety_margin() -> None:
    credential = Credential(access_token="a", expires_at=NOW + 60)
    assert not expired(credential, NOW + 49.9)
    assert expired(credential, NOW + 50)
    assert not expired(Credential(access_token="a"), NOW)


@pytest.mark.parametrize(("failures", "retry_after", "wait"), [
    (1, None, 5.0), (2, None, 10.0), (4, None, 40.0), (7, None, 300.0), (60, None, 300.0),
    (1, 42.0, 42.0), (3, 42.0, 42.0), (1, 0.0, 5.0), (1, 86400.0, 300.0),
])
def test_refresh_backoff_honours_retry_after_between_5_s_and_5_min(
        failures: int, retry_after: float | None, wait: float) -> None:
    assert refresh_backoff(failures, retry_after) == wait


UNIFIED = {
    "anthropic-ratelimit-unified-status": "allowed_warning",
    "anthropic-ratelimit-unified-reset": str(int(NOW + 3600)),
    "anthropic-ratelimit-unified-representative-claim": "five_hour",
    "anthropic-ratelimit-unified-7d-utilization": "0.13",
    "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 86400)),
    "anthropic-ratelimit-unified-5h-status": "allowed_warning",
    "anthropic-ratelimit-unified-5h-utilization": "0.91",
    "anthropic-ratelimit-unified-5h-reset": str(int(NOW + 3600)),
    "anthropic-ratelimit-unified-7d_opus-utilization": "1.04",
    "anthropic-ratelimit-unified-7d_opus-status": "rejected",
    "anthropic-ratelimit-unified-fallback-percentage": "0.5",
    "anthropic-ratelimit-requests-remaining": "10",
    "content-type": "application/json",
}


def test_usage_windows_are_read_from_the_unified_headers() -> None:
    usage = parse_usage_windows(UNIFIED, now=NOW)
    assert usage == UsageWindows(
        observed_at=NOW, status="allowed_warning", reset_at=NOW + 3600,
        representative_claim="five_hour", windows=(
            UsageWindow("5h", "allowed_warning", 0.91, NOW + 3600),
            UsageWindow("7d", None, 0.13, NOW + 86400),
            UsageWindow("7d_opus", "rejected", 1.04, None),
        ))
    assert parse_usage_windows({"anthropic-ratelimit-requests-remaining": "1"}, now=NOW) is None


def test_unreadable_window_values_are_left_out_not_guessed() -> None:
    usage = parse_usage_windows({
        "anthropic-ratelimit-unified-status": "<script>",
        "anthropic-ratelimit-unified-reset": "tomorrow",
        "anthropic-ratelimit-unified-5h-utilization": "-1",
        "anthropic-ratelimit-unified-5h-reset": "2027-01-15T08:00:00Z",
        "anthropic-ratelimit-unified-7d-utilization": "nan",
    }, now=NOW)
    assert usage == UsageWindows(observed_at=NOW, windows=(
        UsageWindow("5h", reset_at=NOW), UsageWindow("7d")))


def windows(*pairs: tuple[float, float | None], status: str | None = None,
            reset_at: float | None = None) -> UsageWindows:
    return UsageWindows(observed_at=NOW, status=status, reset_at=reset_at, windows=tuple(
        UsageWindow(str(i), utilization=u, reset_at=r) for i, (u, r) in enumerate(pairs)))


@pytest.mark.parametrize(("usage", "left"), [
    (None, None),
    (windows((0.25, NOW + 60), (0.5, NOW + 600)), 0.5),
    (windows((0.25, NOW + 60), (1.3, NOW + 600)), 0.0),
    (windows((0.9, NOW - 1), (0.5, NOW + 600)), 0.5),    # a window already reset is fresh
    (windows((0.9, NOW - 1)), 1.0),
    (windows((0.1, None), status="rejected", reset_at=NOW + 60), 0.0),
    (windows((0.1, None), status="rejected", reset_at=NOW - 60), 0.9),
])
def test_headroom_is_what_the_tightest_current_window_leaves(
        usage: UsageWindows | None, left: float | None) -> None:
    assert headroom(usage, NOW) == (None if left is None else pytest.approx(left))


def account(id_: int, usage: UsageWindows | None = None, **changes: object) -> Account:
    return make_account(id_, type=AccountType.OAUTH, usage_windows=usage, **changes)


@pytest.mark.parametrize(("accounts", "last_chosen", "rotation", "expected"), [
    # more window left goes first among equals, however recently it was chosen
    ([account(1, windows((0.8, NOW + 60))), account(2, windows((0.2, NOW + 60)))],
     {2: NOW}, Rotation.BALANCED, [2, 1]),
    # within one band, rotation still alternates
    ([account(1, windows((0.41, NOW + 60))), account(2, windows((0.44, NOW + 60)))],
     {1: NOW}, Rotation.BALANCED, [2, 1]),
    # never reported (an API key) counts as all left
    ([account(1, windows((0.5, NOW + 60))), account(2)], {2: NOW}, Rotation.BALANCED, [2, 1]),
    # priority beats window left
    ([account(1, windows((0.9, NOW + 60)), priority=1), account(2)], {}, Rotation.BALANCED,
     [1, 2]),
    # fill-first ignores windows: it uses one account up before the next
    ([account(1, windows((0.9, NOW + 60))), account(2)], {}, Rotation.FILL_FIRST, [1, 2]),
])
def test_selection_prefers_accounts_with_more_window_left(
        accounts: list[Account], last_chosen: dict[int, float], rotation: Rotation,
        expected: list[int]) -> None:
    order = attempt_order(accounts, now=NOW, rotation=rotation, last_chosen=last_chosen)
    assert [a.id for a in order] == expected


def test_a_rejected_window_cools_until_its_own_reset_not_the_busy_weekly_one() -> None:
    headers = {
        "anthropic-ratelimit-unified-status": "rejected",
        "anthropic-ratelimit-unified-reset": str(int(NOW + 120)),
        "anthropic-ratelimit-unified-representative-claim": "five_hour",
        "anthropic-ratelimit-unified-5h-utilization": "1.02",
        "anthropic-ratelimit-unified-5h-reset": str(int(NOW + 120)),
        "anthropic-ratelimit-unified-7d-utilization": "0.3",
        "anthropic-ratelimit-unified-7d-reset": str(int(NOW + 5 * 86400)),
    }
    body = b'{"type": "error", "error": {"type": "rate_limit_error", "message": "limit"}}'
    outcome = classify_response(429, headers, body, now=NOW, failures=0, jitter=0.0)
    assert outcome.update is not None
    assert outcome.update.cooldown_until == NOW + 120
    assert outcome.update.state is AccountState.OK
    # a weekly window that is the one rejected parks the account, capped by cooldown_max
    weekly = {**headers, "anthropic-ratelimit-unified-reset": str(int(NOW + 5 * 86400)),
              "anthropic-ratelimit-unified-7d-utilization": "1.0"}
    capped = classify_response(429, weekly, body, now=NOW, failures=0, jitter=0.0,
                               cooldown_max=900)
    assert capped.update is not None and capped.update.cooldown_until == NOW + 900
