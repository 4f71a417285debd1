"""The Anthropic surface: `/v1/messages`, `/v1/messages/count_tokens`, `/v1/models`, probes.

Thin by design: read what routing and logs need from the body (model, stream, metadata),
hand the untouched bytes to the forwarder, and relay its answer. The body is never
re-serialised: thinking-block signatures would no longer verify.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.responses import json_response
from kestrel.domain import ApiKey, ClientError, KestrelError, KeyOverLimit, KeyRefused
from kestrel.http import Request, Response
from kestrel.jsontext import parse
from kestrel.proxy.conversation import conversation_key
from kestrel.proxy.forwarder import Call, Forwarder, Relay
from kestrel.proxy.key_meter import KeyMeter
from kestrel.proxy.key_policy import refusal

log = logging.getLogger("kestrel.proxy.keys")

# Models change rarely; a few minutes of cache keeps `/v1/models` from costing an upstream
# round trip each time a tool starts.
MODELS_CACHE_SECONDS = 300.0
# Anthropic pages its model list; one page this large holds every model it has ever listed.
MODELS_PAGE = "/v1/models?limit=1000"
# The API version sent upstream for a client that named none (a field value, as bytes).
DEFAULT_ANTHROPIC_VERSION = b"2023-06-01"

ANTHROPIC_ERROR = {
    "type": "object",
    "properties": {"type": {"const": "error"}, "error": {"type": "object", "properties": {
        "type": {"type": "string"}, "message": {"type": "string"}},
        "required": ["type", "message"]}},
    "required": ["type", "error"],
}
_ERRORS = {400: ANTHROPIC_ERROR, 401: ANTHROPIC_ERROR, 403: ANTHROPIC_ERROR, 413: ANTHROPIC_ERROR,
           429: ANTHROPIC_ERROR, 502: ANTHROPIC_ERROR, 503: ANTHROPIC_ERROR}
_ANY_OBJECT = {"type": "object"}


# A `\uD800`-`\uDFFF` escape: the only way a JSON text decoded as strict UTF-8 can hold a
# surrogate, so bodies without one skip the search for a lone one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request as JSON, only to read routing fields; invalid JSON never goes upstream.

    Stricter than `json.loads`, which also takes UTF-16 and UTF-32, NaN and Infinity, and
    unpaired surrogates (`"\\ud800"`). No other JSON parser takes the first two (RFC 8259
    §8.1, §6); Anthropic refuses the third ("no low surrogate in string"), and a string
    holding one cannot be encoded to UTF-8 again, which the conversation key and the OpenAI
    translation both do.
    """
    try:
        value = parse(raw, _STRICT_JSON)
    except (ValueError, RecursionError):
        raise ClientError("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ClientError("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw) and _holds_lone_surrogate(value):
        raise ClientError("the request body is not valid JSON: a string holds an unpaired "
                          "UTF-16 surrogate (an escape from \\ud800 to \\udfff)")
    return value


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


# One decoder for every request: `json.loads` with an option builds a new one per call.
_STRICT_JSON = json.JSONDecoder(parse_constant=_not_json)


def _holds_lone_surrogate(value: Any) -> bool:
    """Any string (key or value) with a surrogate left over: json pairs the valid ones into a
    single character. Iterative, as the body may be nested as deep as the parser allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def client_of(request: Request) -> str:
    """The client's address as the app resolved it (TRUSTED_PROXIES), else the peer's."""
    client = request.state.get("client")
    return client if isinstance(client, str) else request.client_host


class CallStart:
    """A client request on a proxy route as it arrives: its clock starts when this is made,
    before the body is read, whatever becomes of it. `call` gives the `Call` as far as it is
    known (the model alone, say, when the request is refused before it is forwarded)."""

    def __init__(self, request: Request, key: ApiKey, route: str, target: str) -> None:
        self.received, self.received_at = time.monotonic(), time.time()
        self._request, self._key, self._route, self._target = request, key, route, target

    def call(self, *, model: str | None = None,
             headers: list[tuple[bytes, bytes]] | None = None,
             body: bytes = b"", stream: bool = False, conversation: str | None = None,
             own_body: bool = False) -> Call:
        request = self._request
        # By position, in the fields' order, for the reason `Forwarder._log_row` gives.
        return Call(self._route, "POST", self._target, headers or [], body,
                    request.request_id, model, stream, conversation, self._key.id,
                    client_of(request), request.headers.get("user-agent"), self.received,
                    self.received_at, own_body)


def admit(forwarder: Forwarder, meter: KeyMeter, key: ApiKey, call: Call, *,
          now: float) -> None:
    """Give `call` its admission, or raise why `key` may not make it (a 403 for what the key
    may never do, a 429 for a limit reached), logged and recorded first."""
    try:
        refused = refusal(key, model=call.model, now=now, client=call.client)
        if refused is not None:
            raise refused
        call.ticket = meter.admit(key)
    except (KeyRefused, KeyOverLimit) as exc:
        log.info("key %d (%s) refused: %s", key.id, key.name, exc.reason,
                 extra={"event": {"name": "key_refused", "key_id": key.id,
                                  "reason": exc.reason, "model": call.model}})
        forwarder.record(call, status=exc.status, error_type=exc.reason,
                         error_message=exc.message)
        raise


async def forward_admitted(forwarder: Forwarder, call: Call) -> Relay:
    """The forwarder's answer; an admission the forwarder never closed (it raised before
    recording the request) is closed here, so a key's slot is never lost."""
    try:
        return await forwarder.forward(call)
    except BaseException:
        if call.ticket is not None:
            call.ticket.close()
        raise


class ProxyApi:
    def __init__(self, forwarder: Forwarder, meter: KeyMeter,
                 clock: Callable[[], float] = time.time) -> None:
        self._forwarder = forwarder
        self._meter = meter
        self._clock = clock
        self._models: tuple[float, list[dict[str, Any]]] | None = None

    def endpoints(self) -> list[Endpoint]:
        def client(method: str, path: str, handler: Any, summary: str) -> Endpoint:
            return Endpoint(method, path, handler, summary, "proxy", Auth.CLIENT,
                            request_schema=_ANY_OBJECT if method == "POST" else None,
                            responses={200: _ANY_OBJECT, **_ERRORS})

        return [
            client("POST", "/v1/messages", self.messages,
                   "Anthropic Messages API, streaming or not, served by the pool"),
            client("POST", "/v1/messages/count_tokens", self.count_tokens,
                   "Count the tokens of a Messages request"),
            client("GET", "/v1/models", self.models,
                   "Models: Anthropic's shape with anthropic-version, else OpenAI's"),
            Endpoint("GET", "/api/hello", self.probe, "Reachability probe (Claude Code)", "meta",
                     Auth.PUBLIC, responses={200: _ANY_OBJECT}),
        ]

    async def probe(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def messages(self, request: Request) -> Response:
        return await self._forward_post(request, "/v1/messages")

    async def count_tokens(self, request: Request) -> Response:
        return await self._forward_post(request, "/v1/messages/count_tokens")

    async def _forward_post(self, request: Request, route: str) -> Response:
        key: ApiKey = request.state["api_key"]
        headers = request.headers
        start = CallStart(request, key, route, request.target)
        try:
            raw = await request.body()
            parsed = parse_body(raw)
        except KestrelError as exc:
            self._forwarder.record(start.call(), status=exc.status, error_type=exc.type,
                                   error_message=exc.message)
            raise
        model = parsed.get("model")
        forwarded = start.call(
            model=model if isinstance(model, str) else None, headers=headers.raw, body=raw,
            stream=parsed.get("stream") is True and route == "/v1/messages",
            conversation=conversation_key(headers.get("x-claude-code-session-id"), parsed,
                                          key.id))
        admit(self._forwarder, self._meter, key, forwarded, now=start.received_at)
        return _response(await forward_admitted(self._forwarder, forwarded), request)

    async def models(self, request: Request) -> Response:
        if self._models is None or self._models[0] <= self._clock():
            headers = [(n, v) for n, v in request.headers.raw
                       if n in (b"anthropic-version", b"anthropic-beta", b"user-agent")]
            if not any(n == b"anthropic-version" for n, _ in headers):
                headers.append((b"anthropic-version", DEFAULT_ANTHROPIC_VERSION))
            key: ApiKey = request.state["api_key"]
            relay = await self._forwarder.forward(Call(
                route="/v1/models", method="GET", target=MODELS_PAGE, headers=headers, body=b"",
                request_id=request.request_id, key_id=key.id, client=client_of(request),
                user_agent=request.headers.get("user-agent")))
            if relay.status != 200 or not isinstance(relay.body, bytes):
                return _response(relay, request)
            data = json.loads(relay.body).get("data")
            models = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)] \
                if isinstance(data, list) else []
            self._models = (self._clock() + MODELS_CACHE_SECONDS, models)
        models = self._models[1]
        if "anthropic-version" in request.headers:
            return json_response({
                "data": models, "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None,
            })
        return json_response({"object": "list", "data": [
            {"id": m["id"], "object": "model", "created": _epoch(m.get("created_at")),
             "owned_by": "anthropic"} for m in models]})


def _response(relay: Relay, request: Request) -> Response:
    return Response(relay.status, [("x-kestrel-request-id", request.request_id)], relay.body,
                    relay.headers)


def _epoch(value: Any) -> int:
    """OpenAI's `created` is epoch seconds; Anthropic gives RFC 3339."""
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return 0
