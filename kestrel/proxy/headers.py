"""Which headers cross the proxy, in each direction. Pure.

Upstream: everything end-to-end the client sent (Claude Code's `anthropic-beta` list exactly,
`x-stainless-*`, `x-app`, session ids) minus hop-by-hop headers, the client's own Kestrel
credential, and framing, which the transport sets for the body it sends; then the account's
credential.
Downstream: only what a client of Anthropic reads (content type, request id, retry and
rate-limit headers); framing is the server's business.
"""

from __future__ import annotations

from collections.abc import Iterable

from kestrel.domain import AccountType, Credential

# RFC 9110 §7.6.1 connection-specific fields, plus framing and routing owned by each hop.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate", "host", "content-length",
    "expect",
})
# The client's credential for Kestrel never goes upstream, nor anything of Kestrel's own.
# `accept-encoding` too: Claude Code asks for br and zstd, which the upstream client may not be
# able to decode; the transport advertises exactly the codings httpx's response can undo, and
# the client receives the decoded bytes (with usage read from them on the way).
_KESTREL_ONLY = frozenset({"x-api-key", "authorization", "x-admin-key", "x-request-id",
                           "cookie", "accept-encoding"})

_DROPPED = _HOP_BY_HOP | _KESTREL_ONLY

OAUTH_BETA = "oauth-2025-04-20"

_DOWNSTREAM_EXACT = frozenset({b"content-type", b"request-id", b"retry-after", b"x-should-retry"})
_DOWNSTREAM_PREFIX = b"anthropic-ratelimit-"


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Names listed in `Connection` are hop-by-hop for this message too (RFC 9110 §7.6.1)."""
    tokens: set[str] = set()
    for name, value in headers:
        if name == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def merge_beta(values: list[str], extra: str) -> str:
    """The client's `anthropic-beta` list with `extra` added once, order kept."""
    betas: list[str] = []
    for value in values:
        for beta in value.split(","):
            beta = beta.strip()
            if beta and beta not in betas:
                betas.append(beta)
    if extra not in betas:
        betas.append(extra)
    return ",".join(betas)


def upstream_headers(client_headers: Iterable[tuple[str, str]], account_type: AccountType,
                     credential: Credential) -> list[tuple[str, str]]:
    """Headers for the upstream request: the client's end-to-end ones and the account's auth."""
    items = [(name.lower(), value) for name, value in client_headers]
    listed = _connection_tokens(items)
    dropped = _DROPPED | listed if listed else _DROPPED
    kept = [(name, value) for name, value in items if name not in dropped]
    if account_type is AccountType.OAUTH:
        betas = [value for name, value in kept if name == "anthropic-beta"]
        kept = [(name, value) for name, value in kept if name != "anthropic-beta"]
        kept.append(("anthropic-beta", merge_beta(betas, OAUTH_BETA)))
        kept.append(("authorization", f"Bearer {credential.access_token}"))
    else:
        kept.append(("x-api-key", credential.api_key or ""))
    return kept


def downstream_headers(upstream: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream response headers a client of Anthropic needs to see, as the transport
    parsed and checked them (names in lower case, values as they came): bytes, for the
    server to send as they are (`Response.checked_headers`)."""
    return [(name, value) for name, value in upstream
            if name in _DOWNSTREAM_EXACT or name.startswith(_DOWNSTREAM_PREFIX)]
