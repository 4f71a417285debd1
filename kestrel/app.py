"""Wiring: the application object owns the store and the routes, and dispatches each request.

There is no global state: tests build their own `App` (or run the real process) and every
resource is closed by `App.close()`.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

import httpx

from kestrel import http
from kestrel.api.admin import AdminApi
from kestrel.api.admin_auth import AdminGuard
from kestrel.api.admin_info import InfoApi
from kestrel.api.admin_logs import LogsApi
from kestrel.api.client_auth import (
    RefusalBudget,
    authenticate_client,
    bearer_token,
    refusal_row,
)
from kestrel.api.dashboard import DashboardApi
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.errors import error_response, from_http_error, surface_for_path
from kestrel.api.health import HealthApi
from kestrel.api.metrics import MetricsApi
from kestrel.api.oauth import OAuthApi
from kestrel.api.openai import OpenAIApi
from kestrel.api.openapi import openapi_endpoint
from kestrel.api.proxy import ProxyApi
from kestrel.config import Settings
from kestrel.crypto import Sealer
from kestrel.domain import (
    AccountType,
    Conflict,
    Credential,
    DatabaseUnavailable,
    KestrelError,
    RequestLog,
    UnknownClientKey,
)
from kestrel.logs import request_id_var
from kestrel.oauth.flow import OAuthConfig
from kestrel.oauth.logins import OAuthLogins
from kestrel.oauth.refresher import TokenRefresher
from kestrel.oauth.tokens import TokenClient
from kestrel.proxy.client_address import client_address
from kestrel.proxy.forwarder import Forwarder
from kestrel.proxy.key_meter import KeyMeter
from kestrel.proxy.metrics import Metrics, WriterStats
from kestrel.proxy.pool import AccountPool
from kestrel.proxy.selection import Rotation
from kestrel.proxy.transport import UpstreamTransport
from kestrel.store.accounts import AccountStore
from kestrel.store.admin_failures import AdminFailureStore
from kestrel.store.changes import ChangeFollower, ChangeKind
from kestrel.store.database import Database
from kestrel.store.keys import KeyStore
from kestrel.store.log_writer import LogWriter
from kestrel.store.meta import check_encryption_key
from kestrel.store.oauth import OAuthStateStore
from kestrel.store.oauth_refresh import RefreshLeases
from kestrel.store.request_logs import RequestLogStore
from kestrel.store.usage import UsageStore
from kestrel.workers.siblings import Siblings

log = logging.getLogger("kestrel.app")

# Compared for every request: plain names (see `kestrel/domain.py` on enum members in
# Python 3.11).
_ADMIN, _CLIENT, _METRICS = Auth.ADMIN, Auth.CLIENT, Auth.METRICS


class App:
    def __init__(self, settings: Settings, db: Database, *,
                 clock: Callable[[], float] = time.time, workers: Siblings | None = None) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        sealer = Sealer(settings.encryption_key)
        self.accounts = AccountStore(db, sealer)
        self.keys = KeyStore(db)
        self.pool = AccountPool(self.accounts, rotation=Rotation(settings.rotation))
        # The pool and the key cache are caches of the database: the feed keeps them true
        # when another process (or another machine) changes it.
        self.changes = ChangeFollower(db, {ChangeKind.ACCOUNT: self.pool.load,
                                           ChangeKind.KEY: self.keys.follow})
        request_logs = RequestLogStore(db, instance=settings.instance_name)
        self.log_writer = LogWriter(request_logs, retention_days=settings.log_retention_days,
                                    clock=clock)
        self.upstream = UpstreamTransport(connect_timeout=settings.upstream_connect_timeout,
                                          read_timeout=settings.upstream_read_timeout,
                                          egress=settings.egress, ca_bundle=settings.ca_bundle)
        # The OAuth token endpoint is called rarely and wants httpx's conveniences (JSON
        # bodies, per-call timeouts); it shares the proxy's connections.
        self.token_http = httpx.AsyncClient(transport=self.upstream)
        refresher, self.oauth_logins = _oauth(settings, db, sealer, self.accounts,
                                              self.token_http, clock)
        self.metrics = Metrics()
        self._refusal_budget = RefusalBudget()
        self.usage = UsageStore(db)
        self.meter = KeyMeter(self.usage, holder=_process_name(), zone=settings.time_zone,
                              clock=clock)
        self.forwarder = Forwarder(self.pool, self.upstream, self._record,
                                   default_base_url=settings.claude_base_url,
                                   cooldown_max=settings.cooldown_max, clock=clock,
                                   refresher=refresher, prices=settings.prices)
        self._admin_guard = AdminGuard(settings.admin_key, AdminFailureStore(db))
        workers = workers or Siblings(None)  # alone, unless a supervisor started this process
        self.endpoints: list[Endpoint] = [
            *HealthApi(db, workers).endpoints(),
            *InfoApi(settings).endpoints(),
            *ProxyApi(self.forwarder, self.meter, clock).endpoints(),
            *OpenAIApi(self.forwarder, self.meter, settings.model_aliases, clock).endpoints(),
            *AdminApi(self.accounts, self.keys, self.pool, self.forwarder, self.usage, clock,
                     settings.time_zone).endpoints(),
            *LogsApi(request_logs, self.usage, clock, settings.time_zone).endpoints(),
            *OAuthApi(self.oauth_logins, self.pool, self._admin_guard, settings.admin_key,
                      clock).endpoints(),
            *DashboardApi().endpoints(),
            *MetricsApi(self.metrics, self.pool, self.forwarder, self._writer_stats, workers,
                        clock).endpoints(),
        ]
        self.endpoints.append(openapi_endpoint(lambda: self.endpoints))
        self.router = http.Router()
        for endpoint in self.endpoints:
            self.router.add(endpoint.method, endpoint.path,
                            functools.partial(self._run_endpoint, endpoint))

    @classmethod
    async def open(cls, settings: Settings, workers: Siblings | None = None) -> App:
        """Open the database, prove the encryption key opens it, seed the env's account.

        Raises `StoreError` with an operator-facing message when the database cannot be used.
        """
        db = await Database.open(settings.database)
        try:
            await check_encryption_key(db, Sealer(settings.encryption_key))
            app = cls(settings, db, workers=workers)
        except BaseException:
            await db.close()
            raise
        try:
            await app._seed_default_account()
            await app.changes.start()
            await app.log_writer.start()
            await app.meter.start()
        except BaseException:
            await app.close()
            raise
        return app

    async def close(self) -> None:
        """Release everything, the pending request logs written first. Call after the server
        stopped, so no request is still writing."""
        await self.changes.close()
        await self.meter.close()
        await self.log_writer.close()
        await self.token_http.aclose()
        await self.upstream.aclose()
        await self.db.close()

    async def _seed_default_account(self) -> None:
        key = self.settings.claude_api_key
        if not key or await self.accounts.find_by_api_key(key) is not None:
            return
        if any(a.name == "default" for a in await self.accounts.list()):
            # The operator may have rotated the key of `default` through the admin API; adding
            # the env's old key back on every start would undo that.
            log.warning("CLAUDE_API_KEY is set but an account named 'default' already holds "
                        "another key; leaving the accounts as they are")
            return
        try:
            await self.accounts.create(name="default", type=AccountType.API_KEY,
                                       credential=Credential(api_key=key), now=self.clock())
        except Conflict:
            # Another process on this database (a sibling worker starting at the same moment)
            # added it between our check and our write.
            return
        log.info("added account 'default' from CLAUDE_API_KEY")

    async def handle(self, request: http.Request) -> http.Response:
        """The server's single handler: route, authenticate, run, and render any error."""
        token = request_id_var.set(request.request_id)
        try:
            handler, params = self.router.match(request.method, request.path)
            request.path_params = params
            return await handler(request)
        except http.HTTPError as exc:
            return error_response(surface_for_path(request.path), from_http_error(exc))
        except KestrelError as exc:
            return error_response(surface_for_path(request.path), exc)
        except Exception as exc:
            surface = surface_for_path(request.path)
            if self.db.is_transient(exc):
                # Not a bug of ours: the database is away or busy. One line, no traceback, and
                # the driver's message stays in the log (it may name hosts and files).
                log.warning("%s %s: the database is unavailable (%s)", request.method,
                            request.path, self.db.describe(exc))
                return error_response(surface, DatabaseUnavailable(
                    "the database is unavailable; try again shortly"))
            log.exception("unhandled error in %s %s", request.method, request.path)
            return error_response(surface, KestrelError(
                f"internal error; the server log has the details (request {request.request_id})"))
        finally:
            request_id_var.reset(token)

    def _record(self, row: RequestLog) -> None:
        """Every finished proxy request: counted for /metrics, queued for the request log."""
        self.metrics.observe(row)
        if self.settings.request_log:
            self.log_writer.submit(row)

    def _record_refusal(self, row: RequestLog) -> None:
        """A request refused for its key: always counted, logged within the budget."""
        if self._refusal_budget.take(row.ts):
            self._record(row)
        else:
            self.metrics.observe(row)

    def _writer_stats(self) -> WriterStats:
        writer = self.log_writer
        return WriterStats(writer.queue_depth, writer.written, writer.dropped)

    async def _run_endpoint(self, endpoint: Endpoint, request: http.Request) -> http.Response:
        auth = endpoint.auth
        if auth is _METRICS and _bearer_matches(request.headers, self.settings.metrics_token):
            return await endpoint.handler(request)
        # Behind a trusted reverse proxy, the client it forwarded for (TRUSTED_PROXIES): what
        # the admin lock-out counts per, what request logs show and `allowed_ips` checks.
        client = client_address(request.client_host, request.headers.get("x-forwarded-for"),
                                self.settings.trusted_proxies)
        if auth is _ADMIN or auth is _METRICS:
            await self._admin_guard.check(request.headers.get("x-admin-key"), client,
                                          self.clock())
        elif auth is _CLIENT:
            started = time.monotonic()
            try:
                request.state["api_key"] = await authenticate_client(request.headers, self.keys)
            except UnknownClientKey as refused:
                self._record_refusal(refusal_row(
                    endpoint.path, request.request_id, refused, client=client,
                    user_agent=request.headers.get("user-agent"), now=self.clock(),
                    latency_ms=(time.monotonic() - started) * 1000))
                raise
            request.state["client"] = client
        return await endpoint.handler(request)


def _oauth(settings: Settings, db: Database, sealer: Sealer, accounts: AccountStore,
           http_client: httpx.AsyncClient, clock: Callable[[], float],
           ) -> tuple[TokenRefresher | None, OAuthLogins | None]:
    """The OAuth refresher and login flow, or `(None, None)` while OAUTH_CLIENT_ID is unset."""
    if settings.oauth_client_id is None:
        return None, None
    config = OAuthConfig(client_id=settings.oauth_client_id, auth_url=settings.oauth_auth_url,
                         token_url=settings.oauth_token_url, scopes=settings.oauth_scopes,
                         redirect_uri=settings.oauth_redirect_uri,
                         manual_redirect_uri=settings.oauth_manual_redirect_uri)
    tokens = TokenClient(http_client, config)
    return (TokenRefresher(RefreshLeases(db, sealer), tokens, clock, owner=_process_name()),
            OAuthLogins(config, OAuthStateStore(db, sealer), tokens, accounts))


def _process_name() -> str:
    """This process among all that share the database: host, pid, and a random part for a
    pid reused after a restart."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _bearer_matches(headers: http.Headers, token: str | None) -> bool:
    """The request carries `Authorization: Bearer <token>` (compared in constant time)."""
    presented = bearer_token(headers)
    if not token or presented is None:
        return False
    return hmac.compare_digest(presented.encode(), token.encode())
