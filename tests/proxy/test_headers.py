"""Headers crossing the proxy: what goes upstream, what comes back."""

from __future__ import annotations

from kestrel.domain import AccountType, Credential
from kestrel.proxy.headers import downstream_headers, merge_beta, upstream_headers

CLIENT = [
    ("Host", "kestrel.local"), ("Connection", "keep-alive, x-hop"), ("X-Hop", "1"),
    ("Content-Length", "12"), ("Transfer-Encoding", "chunked"), ("Keep-Alive", "5"),
    ("x-api-key", "kst_client_key"), ("Authorization", "Bearer kst_client_key"),
    ("anthropic-version", "2023-06-01"),
    ("anthropic-beta", "claude-code-20250219,interleaved-thinking-2025-05-14"),
    ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"),
    ("content-type", "application/json"), ("user-agent", "claude-cli/2.0.0 (external, cli)"),
    ("x-app", "cli"), ("x-claude-code-session-id", "s1"), ("x-stainless-retry-count", "0"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
]


def test_api_key_account_gets_end_to_end_headers_and_its_own_key() -> None:
    sent = upstream_headers(CLIENT, AccountType.API_KEY, Credential(api_key="sk-ant-upstream"))
    names = [name for name, _ in sent]
    for gone in ("host", "connection", "x-hop", "content-length", "transfer-encoding",
                 "keep-alive", "authorization", "accept-encoding"):
        assert gone not in names
    assert ("x-api-key", "sk-ant-upstream") in sent
    assert ("x-api-key", "kst_client_key") not in sent
    # betas pass exactly, both header lines, untouched
    assert [v for n, v in sent if n == "anthropic-beta"] == [
        "claude-code-20250219,interleaved-thinking-2025-05-14",
        "fine-grained-tool-streaming-2025-05-14"]
    for kept in ("anthropic-version", "content-type", "user-agent", "x-app",
                 "x-claude-code-session-id", "x-stainless-retry-count"):
        assert kept in names


def test_oauth_account_merges_its_beta_without_duplicates() -> None:
    sent = upstream_headers([*CLIENT, ("anthropic-beta", "oauth-2025-04-20")],
                            AccountType.OAUTH, Credential(access_token="sk-ant-oat01-tok"))
    assert [v for n, v in sent if n == "anthropic-beta"] == [
        "claude-code-20250219,interleaved-thinking-2025-05-14,"
        "fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"]
    assert ("authorization", "Bearer sk-ant-oat01-tok") in sent
    assert "x-api-key" not in [n for n, _ in sent]


def test_merge_beta_adds_once() -> None:
    assert merge_beta([], "oauth-2025-04-20") == "oauth-2025-04-20"
    assert merge_beta(["a, b,,a"], "b") == "a,b"


def test_downstream_keeps_what_clients_read() -> None:
    # Names in lower case, as the transport's parser hands them over.
    upstream = [(b"content-type", b"text/event-stream"), (b"request-id", b"req_1"),
                (b"retry-after", b"3"), (b"anthropic-ratelimit-tokens-remaining", b"10"),
                (b"x-should-retry", b"true"), (b"content-length", b"99"),
                (b"transfer-encoding", b"chunked"), (b"connection", b"close"),
                (b"content-encoding", b"gzip"), (b"set-cookie", b"x=1"), (b"cf-ray", b"abc"),
                (b"anthropic-ratelimit-requests-limit", b"caf\xe9")]  # obs-text
    # As bytes, as they came: the server sends them as they are (`Response.checked_headers`).
    assert downstream_headers(upstream) == [
        (b"content-type", b"text/event-stream"), (b"request-id", b"req_1"), (b"retry-after", b"3"),
        (b"anthropic-ratelimit-tokens-remaining", b"10"), (b"x-should-retry", b"true"),
        (b"anthropic-ratelimit-requests-limit", b"caf\xe9")]
