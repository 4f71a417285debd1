"""OAuth routes: start a login, come back from the provider, or finish it with a pasted code.

| route                        | auth                         | answer                           |
|------------------------------|------------------------------|----------------------------------|
| POST /admin/oauth/link       | admin key                    | `{url, expires_at}` signed link  |
| GET  /api/oauth/authorize    | admin key, or a signed link  | 302 to the provider              |
| GET  /api/oauth/callback     | the login's `state`          | an HTML page saying what happened|
| POST /admin/oauth/start      | admin key                    | `{authorize_url, state, ...}`    |
| POST /admin/oauth/exchange   | admin key                    | the account (201 new, 200 again) |

`/api/oauth/authorize` is declared public to the dispatcher because a browser following a link
cannot send `X-Admin-Key`; it checks the header or the link itself (see `kestrel/oauth/links.py`).
Nothing here ever answers with a token.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable
from urllib.parse import parse_qs

from kestrel.api.admin import ACCOUNT, ERROR, account_json
from kestrel.api.admin_auth import AdminGuard
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import iso_time, json_response, read_json_object
from kestrel.api.schema import Schema, validate
from kestrel.domain import AuthenticationError, ClientError, KestrelError
from kestrel.http import Request, Response
from kestrel.oauth.flow import parse_pasted_code
from kestrel.oauth.links import link_key, link_valid, signed_link
from kestrel.oauth.logins import OAuthLogins
from kestrel.proxy.pool import AccountPool
from kestrel.store.oauth import LoginStateError

OAUTH_OFF = ("OAuth accounts are off: set OAUTH_CLIENT_ID to turn them on (see the README, "
             "\"Connect a Claude subscription account\")")
DASHBOARD_PATH = "/app/"
# The provider's error text is shown back on the page; more than this is not an error message.
MAX_REFLECTED = 300
# Pages that hold or follow a one-time code: never cached, never leaked through a Referer.
_PAGE_HEADERS = [("cache-control", "no-store"), ("referrer-policy", "no-referrer")]
_HTML_HEADERS = [("content-type", "text/html; charset=utf-8"), *_PAGE_HEADERS,
                 ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
                 ("x-content-type-options", "nosniff")]

_NAME: Schema = ACCOUNT["properties"]["name"]
NAME_BODY: Schema = {"type": "object", "properties": {"name": _NAME}, "required": ["name"],
                     "additionalProperties": False}
_TIME = {"type": "string", "format": "date-time"}
LINK: Schema = {"type": "object", "properties": {
    "url": {"type": "string", "description": "Relative URL; valid 2 minutes, for this name."},
    "expires_at": _TIME}, "required": ["url", "expires_at"]}
STARTED: Schema = {"type": "object", "properties": {
    "authorize_url": {"type": "string", "description": "Open it, sign in, copy the code."},
    "state": {"type": "string"}, "expires_at": _TIME},
    "required": ["authorize_url", "state", "expires_at"]}
EXCHANGE: Schema = {"type": "object", "properties": {
    "code": {"type": "string", "minLength": 1, "maxLength": 8192,
             "description": "What the provider's page showed: code#state, or the callback URL."},
    "state": {"type": "string", "minLength": 1, "maxLength": 200,
              "description": "From /admin/oauth/start; optional when the code carries it."}},
    "required": ["code"], "additionalProperties": False}
_QUERY = {"type": "string"}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class OAuthApi:
    def __init__(self, logins: OAuthLogins | None, pool: AccountPool, guard: AdminGuard,
                 admin_key: str, clock: Callable[[], float]) -> None:
        self._logins = logins  # None: OAuth is off (no OAUTH_CLIENT_ID)
        self._pool = pool
        self._guard = guard
        self._link_key = link_key(admin_key)
        self._clock = clock

    def endpoints(self) -> list[Endpoint]:
        errors: dict[int, Schema | None] = {400: ERROR, 401: ERROR, 409: ERROR, 413: ERROR,
                                            422: ERROR, 429: ERROR}
        return [
            Endpoint("POST", "/admin/oauth/link", self.link,
                     "A 2-minute signed link to /api/oauth/authorize (for a browser tab)",
                     "oauth", Auth.ADMIN, request_schema=NAME_BODY,
                     responses={200: LINK, **errors}),
            Endpoint("GET", "/api/oauth/authorize", self.authorize,
                     "Start a login: 302 to the provider. Auth: X-Admin-Key or a signed link",
                     "oauth", Auth.PUBLIC, responses={302: None, **errors},
                     query={"name": _QUERY, "expires": _QUERY, "sig": _QUERY}),
            Endpoint("GET", "/api/oauth/callback", self.callback,
                     "Where the provider sends the browser back; answers an HTML page",
                     "oauth", Auth.PUBLIC,
                     responses={200: None, 400: None, 409: None, 502: None},
                     query={"code": _QUERY, "state": _QUERY, "error": _QUERY}),
            Endpoint("POST", "/admin/oauth/start", self.start,
                     "Start a login whose code is pasted back (headless boxes)", "oauth",
                     Auth.ADMIN, request_schema=NAME_BODY, responses={200: STARTED, **errors}),
            Endpoint("POST", "/admin/oauth/exchange", self.exchange,
                     "Finish a login with the pasted code", "oauth", Auth.ADMIN,
                     request_schema=EXCHANGE,
                     responses={200: ACCOUNT, 201: ACCOUNT, 502: ERROR, **errors}),
        ]

    def _enabled(self) -> OAuthLogins:
        if self._logins is None:
            raise ClientError(OAUTH_OFF)
        return self._logins

    async def link(self, request: Request) -> Response:
        self._enabled()
        body = await read_json_object(request)
        validate(NAME_BODY, body)
        url, expires = signed_link(self._link_key, body["name"], now=self._clock())
        return json_response({"url": url, "expires_at": _iso(expires)}, 200, _PAGE_HEADERS)

    async def authorize(self, request: Request) -> Response:
        logins = self._enabled()
        query = parse_qs(request.query)
        name = _one(query, "name")
        validate(_NAME, name, path="name")
        assert name is not None
        now = self._clock()
        presented = request.headers.get("x-admin-key")
        expires, sig = _one(query, "expires"), _one(query, "sig")
        if presented is not None or expires is None or sig is None:
            await self._guard.check(presented, request.client_host, now)
        elif not link_valid(self._link_key, name, expires, sig, now=now):
            raise AuthenticationError("this link is invalid or has expired: start the "
                                      "connection again from the dashboard")
        url, _, _ = await logins.start(name, paste=False, now=now,
                                       return_to=dashboard_address(request.headers.get("host")))
        return Response(302, [("location", url), *_PAGE_HEADERS])

    async def callback(self, request: Request) -> Response:
        query = parse_qs(request.query)
        state, code, error = _one(query, "state"), _one(query, "code"), _one(query, "error")
        try:
            logins = self._enabled()
            if not state:
                raise ClientError("the provider sent no state: start the connection again")
            if error is not None:
                # Spend the login so its state cannot be replayed, then say what was refused.
                with contextlib.suppress(LoginStateError):
                    await logins.finish_refused(state, now=self._clock())
                detail = f"{error}: {_one(query, 'error_description') or 'no detail'}"
                raise ClientError(f"the sign-in was not completed ({detail[:MAX_REFLECTED]})")
            if not code:
                raise ClientError("the provider sent no code: start the connection again")
            account, created, return_to = await logins.finish(state, code, now=self._clock())
        except KestrelError as exc:
            return _page(exc.status, "Account not connected", exc.message)
        self._pool.put(account)
        who = f" as {account.email}" if account.email else ""
        verb = "connected" if created else "reconnected"
        return _page(200, "Account connected",
                     f"Account “{account.name}” is {verb}{who}. Kestrel keeps its tokens "
                     f"fresh from now on.", back=return_to or "/app/accounts")

    async def start(self, request: Request) -> Response:
        logins = self._enabled()
        body = await read_json_object(request)
        validate(NAME_BODY, body)
        url, state, expires = await logins.start(body["name"], paste=True, now=self._clock())
        return json_response({"authorize_url": url, "state": state, "expires_at": _iso(expires)},
                             200, _PAGE_HEADERS)

    async def exchange(self, request: Request) -> Response:
        logins = self._enabled()
        body = await read_json_object(request)
        validate(EXCHANGE, body)
        code, pasted_state = parse_pasted_code(body["code"])
        state = body.get("state") or pasted_state
        if state is None:
            raise ClientError("state is required (from /admin/oauth/start) unless the code "
                              "carries it as code#state", field="state")
        if pasted_state is not None and pasted_state != state:
            raise ClientError("the pasted code belongs to another login: paste the code shown "
                              "for this one", field="code")
        now = self._clock()
        account, created, _ = await logins.finish(state, code, now=now)
        self._pool.put(account)
        return json_response(account_json(account, now), 201 if created else 200,
                             _PAGE_HEADERS)


def _iso(epoch: float) -> str:
    stamp = iso_time(epoch)
    assert stamp is not None
    return stamp


# A Host header as a browser sends it: a name or an IPv4 or bracketed IPv6 address, and a port.
_HOST = re.compile(r"(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def dashboard_address(host: str | None) -> str | None:
    """Where the dashboard that started a redirect login lives, to link back to from the
    callback: the callback runs on OAUTH_REDIRECT_URI's host (`localhost`), which may not be the
    one the operator signed in on (`127.0.0.1`), and a dashboard's sign-in belongs to its
    origin. Scheme-relative, so a dashboard behind an HTTPS proxy stays on HTTPS."""
    if host is None or not _HOST.fullmatch(host):
        return None
    return f"//{host}{DASHBOARD_PATH}accounts"


def _page(status: int, title: str, message: str, back: str = DASHBOARD_PATH) -> Response:
    """A small self-contained page. Everything reflected is escaped; the CSP forbids scripts."""
    body = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Kestrel: {html.escape(title)}</title><style>body{{font-family:system-ui,"
        "sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}}</style>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>"
        f"<p><a href=\"{html.escape(back)}\">Back to the Kestrel dashboard</a></p></body></html>"
    )
    return Response(status, list(_HTML_HEADERS), body.encode())
