"""Who is calling a proxy route: a Kestrel client key in `x-api-key` or `Authorization: Bearer`.

Claude Code sends `x-api-key` when given ANTHROPIC_API_KEY and a bearer token when given
ANTHROPIC_AUTH_TOKEN; recent `anthropic` and `openai` SDKs send bearer tokens.
"""

from __future__ import annotations

from kestrel.domain import ApiKey, RequestLog, UnknownClientKey, mask_secret
from kestrel.http import Headers
from kestrel.store.keys import KeyStore

MISSING_KEY = ("missing API key: send your Kestrel key in the x-api-key header or as "
               "Authorization: Bearer")
INVALID_KEY = "invalid or revoked API key"


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
        raise UnknownClientKey(MISSING_KEY, reason="missing_key")
    key = await keys.lookup(presented)
    if key is None:
        # What the log keeps of a key it does not know: its family and last four characters,
        # as for any secret (it may be a real key with a typo, or an Anthropic key).
        raise UnknownClientKey(INVALID_KEY, reason="unknown_key", hint=mask_secret(presented))
    if key.revoked:
        raise UnknownClientKey(INVALID_KEY, reason="revoked_key", key_id=key.id,
                               hint=key.prefix + "…")
    return key


# A flood of requests with made-up keys must not fill the disk: each process writes at most
# this many log rows a minute for them (a burst of as many, then one a second); /metrics counts
# every one (kestrel_refused_total).
REFUSAL_ROWS_PER_MINUTE = 60


class RefusalBudget:
    """A token bucket for refusal rows: `take(now)` says whether one more may be written."""

    def __init__(self, per_minute: int = REFUSAL_ROWS_PER_MINUTE) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._tokens = self._capacity
        self._last: float | None = None

    def take(self, now: float) -> bool:
        if self._last is not None:
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def refusal_row(route: str, request_id: str, refused: UnknownClientKey, *, client: str,
                user_agent: str | None, now: float, latency_ms: float) -> RequestLog:
    """The request log's trace of a refused key: its reason and masked hint, never the key."""
    said = refused.message if refused.hint is None else f"{refused.message}: {refused.hint}"
    return RequestLog(ts=now, request_id=request_id, route=route, status=refused.status,
                      key_id=refused.key_id, error_type=refused.reason, error_message=said,
                      latency_ms=latency_ms, client=client, user_agent=user_agent)
