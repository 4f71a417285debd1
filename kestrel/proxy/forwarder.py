"""Send one client request upstream, trying accounts until one serves or none is left.

The rule that shapes this module: a request may move to another account only while nothing
has reached the client. So the response is held back until the upstream's first body bytes of
a 2xx (or its whole error) are in hand; from then on the bytes are relayed as they come and a
failure can only end the stream.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from kestrel.crypto import CryptoError
from kestrel.domain import (
    Account,
    AccountState,
    AccountType,
    Attempt,
    Credential,
    RequestLog,
)
from kestrel.oauth.refresher import RefreshFailed, TokenRefresher, expired, refresh_due
from kestrel.oauth.windows import PREFIX as USAGE_HEADER_PREFIX
from kestrel.oauth.windows import parse_usage_windows
from kestrel.prices import PRICES, Price
from kestrel.proxy.cooldown import (
    DEFAULT_COOLDOWN_MAX,
    HEALTHY,
    AccountUpdate,
    Outcome,
    Verdict,
    classify_response,
    classify_stream_error,
    classify_transport_error,
)
from kestrel.proxy.costing import Costing
from kestrel.proxy.headers import downstream_headers, upstream_headers
from kestrel.proxy.key_meter import Ticket
from kestrel.proxy.pool import AccountPool
from kestrel.proxy.rate_limits import PREFIX as RATE_LIMIT_PREFIX
from kestrel.proxy.stream_relay import StreamRelay, scrub
from kestrel.proxy.transport import (
    ProxyFailed,
    UpstreamResponse,
    UpstreamTransport,
    destination,
)
from kestrel.proxy.usage import MessageSummary, summarize_message

log = logging.getLogger("kestrel.proxy")

# No new attempt starts this long after the request arrived: a client waiting behind a string
# of failing accounts is better served by an error it can act on.
RETRY_DEADLINE_SECONDS = 60.0
# Upstream error bodies are small JSON; reading more than this is not worth holding in memory.
MAX_ERROR_BODY_BYTES = 64 * 1024

LogSink = Callable[[RequestLog], None]

_UNIFIED_PREFIX = USAGE_HEADER_PREFIX.encode("ascii")
_RATELIMIT_PREFIX = RATE_LIMIT_PREFIX.encode("ascii")
# Read on every request: a plain name (see `kestrel/domain.py` on enum members in Python 3.11).
_OAUTH = AccountType.OAUTH


@dataclass(slots=True)
class Call:
    """What the proxy needs to know about one client request. Not frozen so that admission can
    attach its ticket without copying every field; nothing else changes a call once made."""

    route: str
    method: str
    target: str  # upstream path with the client's query string, e.g. /v1/messages?beta=true
    headers: list[tuple[bytes, bytes]]  # the client's fields, names in lower case
    body: bytes
    request_id: str
    model: str | None = None
    stream: bool = False
    conversation: str | None = None
    key_id: int | None = None
    client: str | None = None
    user_agent: str | None = None
    received: float = field(default_factory=time.monotonic)
    received_at: float = field(default_factory=time.time)
    # The route wrote the request's body (JSON) and answers with a body of its own (a
    # translation): the content type either way is the route's, not the client's or upstream's.
    own_body: bool = False
    # The key's admission (its limits' counts): closed with the request's log row.
    ticket: Ticket | None = None


@dataclass
class Relay:
    """An upstream answer on its way to the client."""

    status: int
    headers: list[tuple[bytes, bytes]]
    """The upstream's fields for the client, checked where they were parsed (see
    `downstream_headers`), and Kestrel's own."""
    body: bytes | AsyncIterator[bytes]
    account_id: int | None = None
    message: dict[str, Any] | None = None  # a whole message's body, parsed (never changed)


# The cheapest request that proves a credential works: one model of the list, billed nothing.
TEST_TARGET = "/v1/models?limit=1"


@dataclass(frozen=True)
class AccountTest:
    """What one test request through an account found. `status` None: no HTTP answer (the
    connection or the proxy failed, as `error_type` says)."""

    status: int | None
    error_type: str | None
    latency_ms: float
    proxy: str | None = None
    message: str | None = None


class _Retry(Exception):
    """This attempt failed in a way the next account may not: move on."""


class Forwarder:
    def __init__(
        self,
        pool: AccountPool,
        transport: UpstreamTransport,
        log_sink: LogSink,
        *,
        default_base_url: str,
        cooldown_max: float = DEFAULT_COOLDOWN_MAX,
        retry_deadline: float = RETRY_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        refresher: TokenRefresher | None = None,
        prices: Mapping[str, Price] = PRICES,
    ) -> None:
        self._pool = pool
        self._costing = Costing(prices)
        self._transport = transport
        self._log_sink = log_sink
        self.active_streams = 0
        self._default_base_url = default_base_url
        self._cooldown_max = cooldown_max
        self._retry_deadline = retry_deadline
        self._clock = clock
        self._monotonic = monotonic
        self._jitter = jitter
        self._refresher = refresher  # None: OAuth is off, tokens are used until they fail
        # Parsing a URL is a tenth of a request's CPU, and a deployment has a handful: a few
        # base URLs times the few upstream paths (a query string from a client makes one more).
        self._destination = functools.lru_cache(maxsize=256)(destination)

    async def forward(self, call: Call) -> Relay:
        """The upstream's answer, or raises the pool's `unavailable` error (logged)."""
        attempts: list[Attempt] = []
        for listed in self._pool.candidates(call.conversation, self._clock()):
            if self._monotonic() - call.received > self._retry_deadline:
                break
            account = self._pool.current(listed.id)
            # Another request may have cooled or removed it since the list was made.
            if account is None or not account.usable(self._clock()):
                continue
            try:
                return await self._attempt(call, account, attempts)
            except _Retry:
                continue
        refusal = self._pool.unavailable(self._clock())
        error = refusal.error
        if attempts:
            error.message += f" (this request tried {len(attempts)} account(s))"
        self.record(call, status=error.status, error_type=refusal.reason,
                    error_message=refusal.detail, attempts=attempts)
        raise error

    def record(self, call: Call, *, status: int, error_type: str | None = None,
               error_message: str | None = None,
               attempts: list[Attempt] | tuple[Attempt, ...] = (), account_id: int | None = None,
               summary: MessageSummary | None = None, ttfb_ms: float | None = None) -> None:
        """Hand one finished request to the log writer and close its admission (never
        blocks, never raises)."""
        row = None
        try:
            row = self._log_row(call, status=status, error_type=error_type,
                                error_message=error_message, attempts=attempts,
                                account_id=account_id, summary=summary, ttfb_ms=ttfb_ms)
            self._log_sink(row)
        except Exception:
            log.exception("could not queue the request log")
        finally:
            if call.ticket is not None:
                call.ticket.close(row)

    def _log_row(self, call: Call, *, status: int, error_type: str | None,
                 error_message: str | None, attempts: list[Attempt] | tuple[Attempt, ...],
                 account_id: int | None, summary: MessageSummary | None,
                 ttfb_ms: float | None) -> RequestLog:
        model = summary.model if summary and summary.model else call.model
        tokens, spent = self._costing(model, summary.usage if summary else None)
        # By position, in the fields' order: on Python 3.11 a call with twenty-one keywords
        # matches each name to its parameter, about 10,000 instructions a request here.
        return RequestLog(
            call.received_at, call.request_id, call.route, status, call.key_id, account_id,
            model, call.stream, error_type, tokens.input, tokens.output, tokens.cache_read,
            tokens.cache_write, spent.usd, spent.priced,
            (self._monotonic() - call.received) * 1000, ttfb_ms, call.client, call.user_agent,
            tuple(attempts), error_message)

    async def _attempt(self, call: Call, account: Account, attempts: list[Attempt]) -> Relay:
        started = self._monotonic()
        self._pool.chose(account.id, self._clock())
        credential = await self._credential(account, attempts)
        call_secrets = _secrets_of(credential)
        response = await self._send(call, account, credential, started, attempts)
        if (response.status == 401 and account.type is _OAUTH
                and self._refresher is not None):
            # An access token can die before its expiry (revoked, or refreshed by another
            # client of the same login): refresh it and try this account once more before
            # judging it. A second 401 is then classified like any other.
            # Scrubbed: the log keeps the message, and an upstream may quote the token.
            body = scrub(await _read_bounded(response, MAX_ERROR_BODY_BYTES), call_secrets)
            await response.aclose()
            refused = summarize_message(body)
            attempts.append(_try_of(account, 401, refused.error_type, self.elapsed_ms(started),
                                    message=refused.error_message))
            credential = await self._refresh(account, credential, attempts, keep_valid=False)
            call_secrets += _secrets_of(credential)
            started = self._monotonic()
            response = await self._send(call, account, credential, started, attempts)
        try:
            await self._observe_usage(account, response)
            if response.status >= 300:
                return await self._upstream_error(call, account, response, started, attempts,
                                                  call_secrets)
            if call.stream:
                return await self._open_stream(call, account, response, started, attempts,
                                               call_secrets)
            return await self._whole_answer(call, account, response, started, attempts)
        except BaseException:
            await response.aclose()
            raise

    async def _credential(self, account: Account, attempts: list[Attempt]) -> Credential:
        """The account's credential, its OAuth tokens refreshed first when they are due."""
        try:
            credential = await self._pool.credential(account)
        except CryptoError:
            await self._pool.report(account.id, AccountUpdate(
                AccountState.INVALID, None, account.consecutive_failures + 1,
                "the stored credential cannot be opened; enter it again"), self._clock())
            attempts.append(_try_of(account, None, "credential_error", 0.0))
            raise _Retry from None
        if (account.type is _OAUTH and self._refresher is not None
                and refresh_due(credential, self._clock())):
            credential = await self._refresh(account, credential, attempts, keep_valid=True)
        return credential

    async def _refresh(self, account: Account, stale: Credential, attempts: list[Attempt], *,
                       keep_valid: bool) -> Credential:
        """Fresh tokens for the account, or the account's outcome reported and `_Retry`.

        `keep_valid`: a refresh that failed ahead of time (not `invalid_grant`) leaves the
        current token in use while it has not expired; the next request tries again.
        """
        assert self._refresher is not None
        usable = keep_valid and not expired(stale, self._clock())
        proxy = self._pool.proxy(account.id)
        try:
            fresh = await self._refresher.refresh(account, stale, wait=not usable, proxy=proxy)
        except RefreshFailed as failed:
            now = self._clock()
            if keep_valid and not failed.invalid and not expired(stale, now):
                return stale
            update = AccountUpdate(
                AccountState.INVALID if failed.invalid else AccountState.OK,
                None if failed.invalid else failed.retry_at,
                account.consecutive_failures + 1, failed.message)
            await self._pool.report(account.id, update, now)
            attempts.append(_try_of(account, None, "oauth_refresh_failed", 0.0))
            raise _Retry from None
        self._pool.refreshed(account, fresh, proxy)
        return fresh

    async def _send(self, call: Call, account: Account, credential: Credential, started: float,
                    attempts: list[Attempt]) -> UpstreamResponse:
        base_url = account.base_url or self._default_base_url
        headers = upstream_headers(call.headers, account.type, credential, call.own_body)
        try:
            url = self._destination(base_url + call.target)
        except httpx.InvalidURL:  # stored before base URLs were checked as strictly as now
            await self._transport_failure(account, httpx.ConnectError(
                "the account's base URL cannot be used"), started, attempts)
            raise _Retry from None
        try:
            return await self._transport.send(call.method, url, headers, call.body,
                                              self._pool.proxy(account.id))
        except httpx.HTTPError as exc:
            await self._transport_failure(account, exc, started, attempts)
            raise _Retry from None

    async def _observe_usage(self, account: Account, response: UpstreamResponse) -> None:
        """Every answer may carry the subscription's usage windows (OAuth) or the key's rate
        limit headroom (API keys): keep the latest."""
        now = self._clock()
        # Headroom is read at most once a second per account: most answers skip it.
        limits_due = self._pool.rate_limits_due(account.id, now)
        if not limits_due and account.type is not _OAUTH and account.usage_windows is None:
            # Usage windows come with a subscription's answers: an API key's have nothing to
            # read until its headroom is due again. A gateway in front of subscriptions is the
            # exception: its windows are found when headroom is next read (within a second),
            # and read from every answer after that.
            return
        # Only the rate-limit headers matter here: pick them from the raw bytes rather than
        # decoding every header of every answer.
        unified: dict[str, str] = {}
        limits: dict[str, str] = {}
        for name, raw_value in response.headers:
            if name.startswith(_RATELIMIT_PREFIX):
                if name.startswith(_UNIFIED_PREFIX):
                    unified[name.decode("latin-1")] = raw_value.decode("latin-1")
                elif limits_due:
                    limits[name.decode("latin-1")] = raw_value.decode("latin-1")
        if limits:
            await self._pool.observe_rate_limits(account.id, limits, now)
        if not unified:
            return
        usage = parse_usage_windows(unified, now=now)
        if usage is not None:
            await self._pool.observe_usage(account.id, usage, now)

    async def _transport_failure(self, account: Account, exc: Exception, started: float,
                                 attempts: list[Attempt]) -> None:
        proxy = None
        if isinstance(exc, ProxyFailed):
            # The account's route failed, not Anthropic: say which proxy (never its password).
            kind, proxy = f"proxy_{exc.stage}", exc.proxy.label
            log.warning("account %s: %s", account.name, exc,
                        extra={"account": {"id": account.id}})
        else:
            kind = ("timeout" if isinstance(exc, httpx.TimeoutException)
                    else "connect" if isinstance(exc, httpx.ConnectError) else "protocol")
            log.warning("account %s: upstream %s error (%s)", account.name, kind,
                        type(exc).__name__, extra={"account": {"id": account.id}})
        outcome = classify_transport_error(kind, now=self._clock(),
                                           failures=account.consecutive_failures,
                                           jitter=self._jitter())
        attempts.append(_try_of(account, None, kind, self.elapsed_ms(started), proxy=proxy))
        await self._pool.report(account.id, outcome.update, self._clock())

    async def _upstream_error(self, call: Call, account: Account, response: UpstreamResponse,
                              started: float, attempts: list[Attempt],
                              secrets: tuple[bytes, ...]) -> Relay:
        body, outcome, summary = await self._judge_error(account, response, secrets)
        attempts.append(_try_of(account, response.status, summary.error_type,
                                self.elapsed_ms(started), message=summary.error_message))
        if outcome.verdict is Verdict.RETRY_NEXT:
            log.info("account %s answered %s; trying the next account", account.name,
                     response.status, extra={"account": {"id": account.id}})
            raise _Retry
        # The client's own error (a bad request, an unknown model): what Anthropic said, as is.
        self.record(call, status=response.status, error_type=summary.error_type,
                    error_message=summary.error_message, attempts=attempts,
                    account_id=account.id, summary=summary)
        return Relay(response.status, downstream_headers(response.headers, call.own_body), body,
                     account.id)

    async def _judge_error(self, account: Account, response: UpstreamResponse,
                           secrets: tuple[bytes, ...]) -> tuple[bytes, Outcome, MessageSummary]:
        """Read an error answer (bounded), and report to the pool what it says of the account.
        An upstream (or a gateway in front of it) may quote the credential it refused: the body
        comes back scrubbed, as it may reach a client who must never see the secret."""
        body = scrub(await _read_bounded(response, MAX_ERROR_BODY_BYTES), secrets)
        await response.aclose()
        outcome = classify_response(
            response.status, dict(response.header_items()), body, now=self._clock(),
            failures=account.consecutive_failures, jitter=self._jitter(),
            cooldown_max=self._cooldown_max)
        await self._pool.report(account.id, outcome.update, self._clock())
        return body, outcome, summarize_message(body)

    async def _whole_answer(self, call: Call, account: Account, response: UpstreamResponse,
                            started: float, attempts: list[Attempt]) -> Relay:
        try:
            body = await response.aread()
        except httpx.HTTPError as exc:
            await self._transport_failure(account, exc, started, attempts)
            raise _Retry from None
        summary = summarize_message(body)
        # By the upstream path: /v1/chat/completions is a Messages call upstream too.
        if not _is_sound(call.target.partition("?")[0], body, summary):
            # A 2xx that is not a message (cut short, not JSON): nothing was sent, so retry.
            await self._transport_failure(account, httpx.RemoteProtocolError(
                "the upstream answered 2xx with a body that is not a message"), started, attempts)
            raise _Retry
        upstream_ms = self.elapsed_ms(started)
        attempts.append(_try_of(account, response.status, None, upstream_ms))
        await self._succeeded(account)
        # Once the answer is on its way: the client waits for nothing it does not need (the
        # row's latency then includes handing the answer over). The callback runs before the
        # connection reads anything more, so the key's next request finds its slot free.
        asyncio.get_running_loop().call_soon(functools.partial(
            self.record, call, status=response.status, attempts=attempts,
            account_id=account.id, summary=summary, ttfb_ms=upstream_ms))
        spent_upstream = sum(a.duration_ms for a in attempts)
        overhead = max(0.0, self.elapsed_ms(call.received) - spent_upstream)
        headers = downstream_headers(response.headers, call.own_body)
        headers.append((b"x-kestrel-overhead-ms", b"%.2f" % overhead))
        return Relay(response.status, headers, body, account.id, summary.message)

    async def _open_stream(self, call: Call, account: Account, response: UpstreamResponse,
                           started: float, attempts: list[Attempt],
                           secrets: tuple[bytes, ...]) -> Relay:
        if not (response.header(b"content-type") or "").startswith("text/event-stream"):
            # A 2xx that is not a stream (a JSON body, an HTML page from a gateway): nothing was
            # sent yet, so another account may still serve the request as asked.
            await self._transport_failure(account, httpx.RemoteProtocolError(
                "the upstream answered a streaming request without an event stream"),
                started, attempts)
            raise _Retry
        chunks = response.aiter_bytes()
        try:
            first = await anext(chunks, b"")
        except httpx.HTTPError as exc:
            await self._transport_failure(account, exc, started, attempts)
            raise _Retry from None
        if not first:
            await self._transport_failure(account, httpx.RemoteProtocolError(
                "the upstream ended the stream before its first event"), started, attempts)
            raise _Retry
        attempts.append(_try_of(account, response.status, None, self.elapsed_ms(started)))
        await self._succeeded(account)
        body = StreamRelay(self, call, account, response, first, chunks, attempts, secrets)
        return Relay(response.status, downstream_headers(response.headers, call.own_body), body,
                     account.id)

    async def test_account(self, account: Account, request_id: str) -> AccountTest:
        """One minimal real request through `account` alone (the model list, which costs
        nothing): what upstream said and how long it took. A failure updates the account as
        a real request's would; a success clears its failures."""
        attempts: list[Attempt] = []
        started = self._monotonic()
        call = Call(route="/admin/accounts/test", method="GET", target=TEST_TARGET,
                    headers=[(b"anthropic-version", b"2023-06-01")], body=b"",
                    request_id=request_id)
        try:
            credential = await self._credential(account, attempts)
            response = await self._send(call, account, credential, started, attempts)
        except _Retry:
            failed = attempts[-1] if attempts else None
            return AccountTest(None, failed.error_type if failed else None,
                               self.elapsed_ms(started), failed.proxy if failed else None)
        await self._observe_usage(account, response)
        if response.status >= 300:
            _, _, summary = await self._judge_error(account, response, _secrets_of(credential))
            return AccountTest(response.status, summary.error_type, self.elapsed_ms(started),
                               message=summary.error_message)
        await response.aread()  # to its end: the connection goes back to the pool
        latency = self.elapsed_ms(started)
        await self._succeeded(account)
        return AccountTest(response.status, None, latency)

    async def _succeeded(self, account: Account) -> None:
        await self._pool.report(account.id, HEALTHY, self._clock())

    async def finish_stream(self, call: Call, account: Account, summary: MessageSummary,
                            status: int, error_type: str | None, attempts: list[Attempt],
                            ttfb_ms: float) -> None:
        """Judge how a stream ended (error event, cut short) and write its log row."""
        error_message = None
        try:
            update = None
            # An error event counts even when the client hung up right after reading it.
            if summary.error_type and status in (200, 499):
                error_type, error_message = summary.error_type, summary.error_message
                update = classify_stream_error(summary.error_type, now=self._clock(),
                                               failures=account.consecutive_failures,
                                               jitter=self._jitter())
            elif status == 200 and not summary.completed:
                error_type = "stream_incomplete"
                update = classify_transport_error(
                    "protocol", now=self._clock(), failures=account.consecutive_failures,
                    jitter=self._jitter()).update
            await self._pool.report(account.id, update, self._clock())
        except Exception:
            log.exception("could not record the end of a stream")
        self.record(call, status=status, error_type=error_type, error_message=error_message,
                    attempts=attempts, account_id=account.id, summary=summary, ttfb_ms=ttfb_ms)

    def elapsed_ms(self, since: float) -> float:
        return (self._monotonic() - since) * 1000


def _try_of(account: Account, status: int | None, error_type: str | None, duration_ms: float,
            *, proxy: str | None = None, message: str | None = None) -> Attempt:
    """One try of `account`, with its name as it is now: the log keeps it past a rename."""
    return Attempt(account.id, status, error_type, duration_ms, proxy, message, account.name)


def _is_sound(path: str, body: bytes, summary: MessageSummary) -> bool:
    """A 2xx body worth relaying: a whole message on /v1/messages, a JSON object elsewhere."""
    if path == "/v1/messages":
        return summary.completed
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def _secrets_of(credential: Credential) -> tuple[bytes, ...]:
    return tuple(secret.encode() for secret in (credential.api_key, credential.access_token,
                                                credential.refresh_token) if secret)


async def _read_bounded(response: UpstreamResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except httpx.HTTPError:
        pass  # an error body cut short still says enough to classify by status
    return b"".join(parts)[:limit]
