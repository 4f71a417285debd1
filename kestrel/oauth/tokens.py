"""The token endpoint: exchange an authorization code, refresh an access token.

Besides `proxy/`, this is the only code that talks to Anthropic. Requests are JSON, not the form
encoding of RFC 6749, because that is what Anthropic's token endpoint takes (the README
cites where this was learnt); the code exchange also carries `state`, as Claude Code sends it.
Answers are read by `parse_token_response`, a pure function, so every shape of answer is tested
without a network.

Nothing here puts a token into an exception, a log line or a repr: messages are built from the
provider's `error` / `error_description` only, cleaned of anything that looks like a secret.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from kestrel import __version__
from kestrel.domain import Credential, UpstreamError
from kestrel.egress import PROXY_EXTENSION, Proxy
from kestrel.oauth.flow import OAuthConfig

# The token endpoint answers in well under a second; a slow one must not hold a request (and
# everything waiting on the same refresh) for the proxy's long upstream read timeout.
TOKEN_TIMEOUT_SECONDS = 30.0
# Error messages from the provider are short; more than this is not worth showing anyone.
MAX_ERROR_TEXT = 200

_SECRET_RE = re.compile(r"(sk-ant-\S*|(?i:bearer)\s+\S+|[A-Za-z0-9_-]{40,})")


class TokenEndpointError(UpstreamError):
    """The token endpoint could not be reached or did not give tokens (502 on the admin API).

    `retry_after` is the provider's `retry-after` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidGrant(TokenEndpointError):
    """`invalid_grant`: the code or refresh token is spent, expired or revoked. Retrying the
    same grant never helps; for a refresh it means the account must be connected again."""

    status = 400
    type = "invalid_request_error"


@dataclass(frozen=True)
class TokenGrant:
    """What a successful token answer gave: tokens (never shown) and who signed in."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: float | None
    obtained_at: float
    email: str | None = None
    organization: str | None = None

    def credential(self, previous_refresh_token: str | None = None) -> Credential:
        """The credential to store. A refresh answer without a new refresh token means the old
        one stays valid (no rotation), so it is kept."""
        return Credential(access_token=self.access_token,
                          refresh_token=self.refresh_token or previous_refresh_token,
                          expires_at=self.expires_at, obtained_at=self.obtained_at)


def parse_token_response(status: int, headers: Mapping[str, str], body: bytes, *,
                         now: float) -> TokenGrant:
    """A token endpoint answer as a `TokenGrant`, or the error it amounts to.

    `headers` have lower-case names. The identity fields follow Anthropic's answer:
    `account.email_address`, and `organization.name` (else its `uuid`).
    """
    payload = _json_object(body)
    if 200 <= status < 300:
        access = payload.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenEndpointError(f"the token endpoint answered {status} without an "
                                     f"access token")
        refresh = payload.get("refresh_token")
        expires_in = payload.get("expires_in")
        lifetime = (float(expires_in) if isinstance(expires_in, int | float)
                    and not isinstance(expires_in, bool) and math.isfinite(expires_in)
                    and expires_in > 0 else None)
        return TokenGrant(
            access_token=access,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_at=now + lifetime if lifetime is not None else None,
            obtained_at=now,
            email=_text(_get(payload, "account", "email_address")),
            organization=_text(_get(payload, "organization", "name"))
            or _text(_get(payload, "organization", "uuid")),
        )
    error = _text(payload.get("error")) or ""
    description = _text(payload.get("error_description")) or _text(
        _get(payload, "error", "message")) or ""
    detail = _clean(": ".join(part for part in (error, description) if part)) or "no detail"
    if error == "invalid_grant":
        raise InvalidGrant(f"the token endpoint refused the grant ({detail})")
    retry_after = _retry_after(headers.get("retry-after"), now)
    raise TokenEndpointError(f"the token endpoint answered {status} ({detail})",
                             retry_after=retry_after)


class TokenClient:
    """Talks to `config.token_url` with the app's HTTP client."""

    def __init__(self, http: httpx.AsyncClient, config: OAuthConfig) -> None:
        self._http = http
        self._config = config

    async def exchange(self, *, code: str, state: str, verifier: str, redirect_uri: str,
                       now: float) -> TokenGrant:
        return await self._post({
            "grant_type": "authorization_code",
            "code": code,
            "state": state,
            "client_id": self._config.client_id,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }, now)

    async def refresh(self, refresh_token: str, *, now: float,
                      proxy: Proxy | None = None) -> TokenGrant:
        """`proxy`: the account's own, so its refreshes leave from the same address as its
        requests (None: the environment's, if any)."""
        return await self._post({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self._config.client_id,
        }, now, proxy)

    async def _post(self, body: dict[str, str], now: float,
                    proxy: Proxy | None = None) -> TokenGrant:
        try:
            response = await self._http.post(
                self._config.token_url, json=body, timeout=TOKEN_TIMEOUT_SECONDS,
                headers={"accept": "application/json", "user-agent": f"kestrel/{__version__}"},
                extensions={PROXY_EXTENSION: proxy} if proxy is not None else None)
        except httpx.HTTPError as exc:
            raise TokenEndpointError(f"cannot reach the token endpoint "
                                     f"({type(exc).__name__})") from None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return parse_token_response(response.status_code, headers, response.content, now=now)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _get(payload: dict[str, Any], outer: str, inner: str) -> object:
    value = payload.get(outer)
    return value.get(inner) if isinstance(value, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _clean(text: str) -> str:
    text = " ".join(_SECRET_RE.sub("[redacted]", text).split())
    return text[: MAX_ERROR_TEXT - 1] + "…" if len(text) > MAX_ERROR_TEXT else text


def _retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` in seconds from now: delta seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT even when it does not say so
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
