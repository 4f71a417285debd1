"""Headers crossing the proxy: what goes upstream, what comes back."""

from __future__ import annotations

from kestrel.domain import AccountType, Credential
from kestrel.http import Headers
from kestrel.proxy.headers import downstream_headers, merge_beta, upstream_headers

# As the server hands them over: fields as they came (names in any case), names lower-cased.
CLIENT = Headers.from_raw([
    (b"Host", b"kestrel.local"), (b"Connection", b"keep-alive, X-Hop"), (b"X-Hop", b"1"),
    (b"Content-Length", b"12"), (b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"5"),
    (b"x-api-key", b"kst_client_key"), (b"Authorization", b"Bearer kst_client_key"),
    (b"anthropic-version", b"2023-06-01"),
    (b"anthropic-beta", b"claude-code-20250219,interleaved-thinking-2025-05-14"),
    (b"anthropic-beta", b"fine-grained-tool-streaming-2025-05-14"),
    (b"content-type", b"application/json"), (b"user-agent", b"claude-cli/2.0.0 (external, cli)"),
    (b"x-app", b"cli"), (b"x-claude-code-session-id", b"s1"), (b"x-stainless-retry-count", b"0"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"), (b"X-Team", b"caf\xe9"),  # obs-text
]).raw


def test_api_key_account_gets_end_to_end_headers_and_its_own_key() -> None:
    sent = upstream_headers(CLIENT, AccountType.API_KEY, Credential(api_key="sk-ant-upstream"))
    names = [name for name, _ in sent]
    for gone in (b"host", b"connection", b"x-hop", b"content-length", b"transfer-encoding",
                 b"keep-alive", b"authorization", b"accept-encoding"):
        assert gone not in names
    assert (b"x-api-key", b"sk-ant-upstream") in sent
    assert (b"x-api-key", b"kst_client_key") not in sent
    # betas pass exactly, both header lines, untouched
    assert [v for n, v in sent if n == b"anthropic-beta"] == [
        b"claude-code-20250219,interleaved-thinking-2025-05-14",
        b"fine-grained-tool-streaming-2025-05-14"]
    for kept in (b"anthropic-version", b"content-type", b"user-agent", b"x-app",
                 b"x-claude-code-session-id", b"x-stainless-retry-count"):
        assert kept in names
    # A value goes upstream as it came, bytes outside ASCII included.
    assert (b"x-team", b"caf\xe9") in sent


def test_a_route_that_wrote_the_body_sends_its_own_content_type() -> None:
    client = [*CLIENT, (b"content-type", b"text/plain")]  # twice, and not what we send
    sent = upstream_headers(client, AccountType.API_KEY, Credential(api_key="sk-ant-upstream"),
                            own_body=True)
    assert [v for n, v in sent if n == b"content-type"] == [b"application/json"]
    assert b"x-hop" not in [n for n, _ in sent]  # the client's Connection list still counts
    # Relaying the client's own body, its content types go as they came.
    relayed = upstream_headers(client, AccountType.API_KEY, Credential(api_key="k"))
    assert [v for n, v in relayed if n == b"content-type"] == [b"application/json",
                                                                b"text/plain"]


def test_oauth_account_merges_its_beta_without_duplicates() -> None:
    sent = upstream_headers([*CLIENT, (b"anthropic-beta", b"oauth-2025-04-20")],
                            AccountType.OAUTH, Credential(access_token="sk-ant-oat01-tok"))
    assert [v for n, v in sent if n == b"anthropic-beta"] == [
        b"claude-code-20250219,interleaved-thinking-2025-05-14,"
        b"fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"]
    assert (b"authorization", b"Bearer sk-ant-oat01-tok") in sent
    assert b"x-api-key" not in [n for n, _ in sent]


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
    # A route that writes a body of its own (the OpenAI one) sends its own content type.
    assert downstream_headers(upstream, own_body=True) == downstream_headers(upstream)[1:]
