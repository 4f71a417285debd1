"""Who is calling a proxy route: a Kestrel client key in `x-api-key` or `Authorization: Bearer`.

Claude Code sends `x-api-key` when given ANTHROPIC_API_KEY and a bearer token when given
ANTHROPIC_AUTH_TOKEN; recent `anthropic` and `openai` SDKs send bearer tokens.
"""

from __future__ import annotations

from kestrel.domain import ApiKey, AuthenticationError
from kestrel.http import Headers
from kestrel.store.keys import KeyStore

MISSING_KEY = ("missing API key: send your Kestrel key in the x-api-key header or as "
               "Authorization: Bearer")


def bearer_token(headers: Headers) -> str | None:
    """The token of `Authorization: Bearer <token>`, if the request carries one."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def presented_key(headers: Headers) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    return bearer_token(headers)


async def authenticate_client(headers: Headers, keys: KeyStore) -> ApiKey:
    presented = presented_key(headers)
    if presented is None:
        raise AuthenticationError(MISSING_KEY)
    key = await keys.authenticate(presented)
    if key is None:
        raise AuthenticationError("invalid or revoked API key")
    return key
