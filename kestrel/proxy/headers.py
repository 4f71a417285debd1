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
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"te", b"trailer",
    b"upgrade", b"proxy-authorization", b"proxy-authenticate", b"host", b"content-length",
    b"expect",
})
# The client's credential for Kestrel never goes upstream, nor anything of Kestrel's own.
# `accept-encoding` too: Claude Code asks for br and zstd, which the upstream client may not be
# able to decode; the transport advertises exactly the codings httpx's response can undo, and
# the client receives the decoded bytes (with usage read from them on the way).
_KESTREL_ONLY = frozenset({b"x-api-key", b"authorization", b"x-admin-key", b"x-request-id",
                           b"cookie", b"accept-encoding"})

_DROPPED = _HOP_BY_HOP | _KESTREL_ONLY
# A route that wrote the request's body itself (a translation, in JSON) sends its own type.
_DROPPED_OWN_BODY = _DROPPED | {b"content-type"}
_JSON_TYPE = (b"content-type", b"application/json")

OAUTH_BETA = "oauth-2025-04-20"
# Read on every request: a plain name (see `kestrel/domain.py` on enum members in Python 3.11).
_OAUTH = AccountType.OAUTH

_DOWNSTREAM_EXACT = frozenset({b"content-type", b"request-id", b"retry-after", b"x-should-retry"})
# For a route that answers with a body of its own (a translation), and its own content type.
_DOWNSTREAM_EXACT_OWN_BODY = _DOWNSTREAM_EXACT - {b"content-type"}
_DOWNSTREAM_PREFIX = b"anthropic-ratelimit-"


def _connection_tokens(fields: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Names listed in `Connection` are hop-by-hop for this message too (RFC 9110 §7.6.1)."""
    tokens: set[bytes] = set()
    for name, value in fields:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
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


def upstream_headers(client_fields: list[tuple[bytes, bytes]], account_type: AccountType,
                     credential: Credential, own_body: bool = False
                     ) -> list[tuple[bytes, bytes]]:
    """Fields for the upstream request: the client's end-to-end ones and the account's auth;
    with `own_body` (the route wrote the body, in JSON) its content type instead of theirs.

    Bytes in and out, names in lower case (`Headers.raw`): the client's fields go upstream as
    they came, obs-text included (RFC 9110 §5.5), and nothing is decoded or encoded again
    but the credential (latin-1, as every field).
    """
    listed = _connection_tokens(client_fields)
    dropped = _DROPPED_OWN_BODY if own_body else _DROPPED
    if listed:
        dropped = dropped | listed
    kept = [(name, value) for name, value in client_fields if name not in dropped]
    if own_body:
        kept.append(_JSON_TYPE)
    if account_type is _OAUTH:
        betas = [value.decode("latin-1") for name, value in kept if name == b"anthropic-beta"]
        kept = [(name, value) for name, value in kept if name != b"anthropic-beta"]
        kept.append((b"anthropic-beta", merge_beta(betas, OAUTH_BETA).encode("latin-1")))
        kept.append((b"authorization", f"Bearer {credential.access_token}".encode("latin-1")))
    else:
        kept.append((b"x-api-key", (credential.api_key or "").encode("latin-1")))
    return kept


def downstream_headers(upstream: Iterable[tuple[bytes, bytes]], own_body: bool = False
                       ) -> list[tuple[bytes, bytes]]:
    """The upstream response headers a client of Anthropic needs to see, as the transport
    parsed and checked them (names in lower case, values as they came): bytes, for the
    server to send as they are (`Response.checked_headers`). With `own_body` (the route
    answers with a body of its own) the upstream's content type stays behind."""
    exact = _DOWNSTREAM_EXACT_OWN_BODY if own_body else _DOWNSTREAM_EXACT
    return [(name, value) for name, value in upstream
            if name in exact or name.startswith(_DOWNSTREAM_PREFIX)]
