"""A fake OAuth provider shaped like Anthropic's: real HTTP on 127.0.0.1, in a background thread.

    with FakeOAuth(lifetimes=[60]) as provider:
        env = provider.env()            # OAUTH_CLIENT_ID, OAUTH_AUTH_URL, OAUTH_TOKEN_URL
        ...                             # start Kestrel with it, ask it for an authorize URL
        pasted = provider.approve(url)  # "code#state" (paste flow) or the callback URL

`GET /oauth/authorize` checks the client id, that the redirect URI is one the client registered,
`response_type=code`, an S256 challenge and a state, then issues a single-use code: shown on a
page as `code#state` when the URL says `code=true`, else by a 302 to the redirect URI.

`POST /v1/oauth/token` takes JSON only, as Anthropic's does. For `authorization_code` it checks
the code is known and unused, the client id, the redirect URI and state given at authorization,
and `S256(code_verifier) == code_challenge`; for `refresh_token`, that the token is the current
one of its login: refresh tokens rotate, so an old one answers `invalid_grant`. Tokens live
`lifetimes` seconds (queued, one per grant, then `default_lifetime`). `script_refresh()` makes
the next refresh answers fail: `INVALID_GRANT`, `rate_limited(retry_after)`, `SERVER_ERROR`.
`echo_secrets=True` makes error answers repeat the code or refresh token they refuse.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

CLIENT_ID = "kestrel-test-client-0001"
CALLBACK = "http://localhost:8080/api/oauth/callback"
MANUAL_CALLBACK = "https://platform.claude.com/oauth/code/callback"
EMAIL = "operator@example.test"
ORGANIZATION = "Example Org"

INVALID_GRANT = ("invalid_grant", 400, None)
SERVER_ERROR = ("server_error", 500, None)


def rate_limited(retry_after: int) -> tuple[str, int, int | None]:
    return ("rate_limited", 429, retry_after)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class _Code:
    challenge: str
    redirect_uri: str
    state: str
    used: bool = False


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str
    status: int


class FakeOAuth:
    def __init__(self, *, lifetimes: Iterable[int] = (), default_lifetime: int = 3600,
                 redirect_uris: Iterable[str] = (CALLBACK, MANUAL_CALLBACK),
                 refresh_delay: float = 0.0, echo_secrets: bool = False) -> None:
        self.client_id = CLIENT_ID
        self.redirect_uris = set(redirect_uris)
        self.default_lifetime = default_lifetime
        self.refresh_delay = refresh_delay
        self.deny_next = False
        # A careless provider: its error answers repeat the code or token they refused, so a
        # test can check that Kestrel never passes such text on.
        self.echo_secrets = echo_secrets
        self._lifetimes = deque(lifetimes)
        self._scripted: deque[tuple[str, int, int | None]] = deque()
        self._codes: dict[str, _Code] = {}
        self._refresh_tokens: set[str] = set()
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self.requests: list[TokenRequest] = []
        self.access_tokens: list[str] = []
        """Every access token issued, oldest first."""
        self.refresh_tokens: list[str] = []
        """Every refresh token issued, oldest first."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeOAuth:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        # A short poll keeps `shutdown()` quick: the default half second adds up over a suite.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Kestrel settings that point at this provider (redirect URIs left at their defaults)."""
        return {"OAUTH_CLIENT_ID": self.client_id,
                "OAUTH_AUTH_URL": f"{self.base_url}/oauth/authorize",
                "OAUTH_TOKEN_URL": f"{self.base_url}/v1/oauth/token"}

    # --- scripting and observing -------------------------------------------------------------

    def script_refresh(self, answers: Iterable[tuple[str, int, int | None]]) -> None:
        with self._lock:
            self._scripted.extend(answers)

    def refreshes(self) -> list[TokenRequest]:
        with self._lock:
            return [r for r in self.requests if r.grant_type == "refresh_token"]

    def issue_tokens(self) -> dict[str, Any]:
        """A token answer as a finished login gets it, without the browser part."""
        with self._lock:
            return self._issue()[2]

    def approve(self, authorize_url: str) -> str:
        """Play the operator signing in: what the browser ends with. For the paste flow, the
        `code#state` the page shows; for the redirect flow, the URL it is sent back to."""
        response = httpx.get(authorize_url, follow_redirects=False, timeout=5)
        if response.status_code == 302:
            return response.headers["location"]
        assert response.status_code == 200, response.text
        return response.text.split("<code>")[1].split("</code>")[0]

    # --- the endpoints -----------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], str]:
        problems = []
        if query.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:
            problems.append(f"Redirect URI {redirect_uri} is not supported by client.")
        if query.get("response_type") != "code":
            problems.append("response_type must be code")
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            problems.append("an S256 code_challenge is required")
        if not query.get("state") or not query.get("scope"):
            problems.append("state and scope are required")
        if problems:
            return 400, {}, "; ".join(problems)
        state = query["state"]
        if self.deny_next:
            self.deny_next = False
            location = redirect_uri + "?" + urlencode(
                {"error": "access_denied", "error_description": "<b>denied</b> by the user",
                 "state": state})
            return 302, {"location": location}, ""
        code = f"code{next(self._serial):04d}-{time.monotonic_ns()}"
        with self._lock:
            self._codes[code] = _Code(query["code_challenge"], redirect_uri, state)
        if query.get("code") == "true":
            page = f"<p>Paste this code into your application:</p><code>{code}#{state}</code>"
            return 200, {}, page
        location = redirect_uri + "?" + urlencode({"code": code, "state": state})
        return 302, {"location": location}, ""

    def token(self, content_type: str, raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        try:
            body = json.loads(raw) if content_type.startswith("application/json") else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return 400, {}, {"error": "invalid_request", "error_description": "JSON body only"}
        grant = str(body.get("grant_type"))
        if grant == "refresh_token" and self.refresh_delay:
            time.sleep(self.refresh_delay)
        with self._lock:
            status, headers, answer = self._grant(grant, body)
            self.requests.append(TokenRequest(grant, status))
        return status, headers, answer

    def _grant(self, grant: str, body: dict[str, Any]) -> tuple[int, dict[str, str],
                                                                 dict[str, Any]]:
        if body.get("client_id") != self.client_id:
            return 401, {}, {"error": "invalid_client", "error_description": "unknown client"}
        if grant == "authorization_code":
            code = self._codes.get(str(body.get("code")))
            if code is None or code.used:
                return _invalid("Invalid authorization code" + self._echo(body, "code"))
            code.used = True  # single use, even when the rest of the request is wrong
            if body.get("redirect_uri") != code.redirect_uri or body.get("state") != code.state:
                return _invalid("redirect_uri or state does not match the authorization")
            if s256(str(body.get("code_verifier"))) != code.challenge:
                return _invalid("code_verifier does not match the code_challenge")
            return self._issue()
        if grant == "refresh_token":
            if self._scripted:
                kind, status, retry_after = self._scripted.popleft()
                headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
                description = f"scripted {kind}" + self._echo(body, "refresh_token")
                return status, headers, {"error": kind, "error_description": description}
            token = str(body.get("refresh_token"))
            if token not in self._refresh_tokens:
                return _invalid("Refresh token not found or invalid"
                                + self._echo(body, "refresh_token"))
            self._refresh_tokens.discard(token)  # rotation: the old one is spent
            return self._issue()
        return 400, {}, {"error": "unsupported_grant_type"}

    def _echo(self, body: dict[str, Any], name: str) -> str:
        return f" ({name} {body.get(name)})" if self.echo_secrets else ""

    def _issue(self) -> tuple[int, dict[str, str], dict[str, Any]]:
        n = next(self._serial)
        access = f"sk-ant-oat01-fake{n:04d}-ACCESSSECRET-0123456789"
        refresh = f"sk-ant-ort01-fake{n:04d}-REFRESHSECRET-0123456789"
        self._refresh_tokens.add(refresh)
        self.access_tokens.append(access)
        self.refresh_tokens.append(refresh)
        lifetime = self._lifetimes.popleft() if self._lifetimes else self.default_lifetime
        return 200, {}, {
            "token_type": "Bearer", "access_token": access, "refresh_token": refresh,
            "expires_in": lifetime, "scope": "user:profile user:inference",
            "account": {"uuid": "acc-uuid-1", "email_address": EMAIL},
            "organization": {"uuid": "org-uuid-1", "name": ORGANIZATION},
        }


def _invalid(description: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    return 400, {}, {"error": "invalid_grant", "error_description": description}


def _handler(provider: FakeOAuth) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
            parts = urlsplit(self.path)
            if parts.path != "/oauth/authorize":
                return self._send(404, {}, b"not found", "text/plain")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, headers, text = provider.authorize(query)
            self._send(status, headers, text.encode(), "text/html; charset=utf-8")

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            if urlsplit(self.path).path != "/v1/oauth/token":
                return self._send(404, {}, b"{}", "application/json")
            status, headers, answer = provider.token(self.headers.get("content-type", ""), raw)
            self._send(status, headers, json.dumps(answer).encode(), "application/json")

        def _send(self, status: int, headers: dict[str, str], body: bytes,
                  content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the tests read what happened from the provider, not from stderr

    return Handler
