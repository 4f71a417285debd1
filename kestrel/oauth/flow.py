"""The authorization request of an OAuth login: PKCE, `state`, the URL, and the pasted code.

Pure apart from drawing random bytes. Anthropic's flow is the standard authorization code grant
with PKCE (RFC 7636, S256 only) plus two habits of its own, both described in the README:
`code=true` on the authorization URL makes its page show the code for pasting instead of
redirecting, and the code it shows reads `code#state`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from kestrel.domain import ClientError

# 32 random bytes give a 43-character verifier, RFC 7636's minimum length, and 256 bits that
# no one guesses; the same for `state`, which guards the callback against forgery.
RANDOM_BYTES = 32
# A login left open longer than this is abandoned; its `state` is refused afterwards.
LOGIN_TTL_SECONDS = 600.0
# Anything longer is not a code Anthropic issued: refuse it before it reaches the token endpoint.
MAX_CODE_LENGTH = 4096


@dataclass(frozen=True)
class OAuthConfig:
    """Where the provider is and who Kestrel says it is. Every URL comes from the settings, so
    tests point them at a fake provider."""

    client_id: str
    auth_url: str
    token_url: str
    scopes: str
    redirect_uri: str
    """Where the provider sends the browser back: Kestrel's `/api/oauth/callback`."""
    manual_redirect_uri: str
    """The provider's own page that shows the code to paste (headless boxes)."""


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_secret() -> str:
    """A fresh PKCE verifier or `state`: base64url without padding, as RFC 7636 §4.1 asks."""
    return _b64url(secrets.token_bytes(RANDOM_BYTES))


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(ASCII(verifier))), RFC 7636 §4.2."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def authorize_url(config: OAuthConfig, *, state: str, verifier: str, redirect_uri: str,
                  show_code: bool) -> str:
    """The provider URL the operator opens to sign in and approve.

    `show_code` asks for the paste flow (`code=true`), the way Claude Code asks for it when no
    browser can reach a local callback.
    """
    params = {"code": "true"} if show_code else {}
    params.update({
        "client_id": config.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": config.scopes,
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        "state": state,
    })
    separator = "&" if urlsplit(config.auth_url).query else "?"
    return config.auth_url + separator + urlencode(params)


def parse_pasted_code(text: str) -> tuple[str, str | None]:
    """`(code, state or None)` from what an operator pasted.

    Accepts the `code#state` the provider's page shows, a bare code, or the whole callback URL
    copied from the address bar (`...?code=...&state=...`) when a redirect could not reach
    Kestrel.
    """
    pasted = text.strip()
    if pasted.startswith(("http://", "https://")):
        query = parse_qs(urlsplit(pasted).query)
        code, state = query.get("code", [""])[0], query.get("state", [None])[0]
    else:
        code, _, rest = pasted.partition("#")
        state = rest or None
    if not code or len(code) > MAX_CODE_LENGTH or any(c.isspace() for c in code):
        raise ClientError("that is not an authorization code: paste the code the sign-in page "
                          "showed (it looks like code#state)", field="code")
    return code, state
