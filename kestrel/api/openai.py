"""`POST /v1/chat/completions`: OpenAI's Chat Completions API, answered by Claude from the pool.

Thin like the Anthropic surface: the body is translated into a Messages request (`translate/`),
sent through the same forwarder as `/v1/messages` (rotation, affinity, retries before the first
byte, one request log under this route, usage read from the raw upstream stream), and the
answer translated back. Unlike `/v1/messages` the upstream body is ours to serialise: nothing
in it carries a signature. Errors, Kestrel's or the upstream's, leave in OpenAI's shape.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kestrel import http
from kestrel.api.endpoints import Auth, Endpoint
from kestrel.api.errors import from_http_error
from kestrel.api.proxy import (
    DEFAULT_ANTHROPIC_VERSION,
    CallStart,
    admit,
    forward_admitted,
    parse_body,
)
from kestrel.api.responses import json_text_response
from kestrel.domain import ApiKey, KestrelError, UpstreamError
from kestrel.http import Request, Response
from kestrel.jsontext import compact
from kestrel.proxy.conversation import conversation_key
from kestrel.proxy.forwarder import Forwarder, Relay
from kestrel.proxy.key_meter import KeyMeter
from kestrel.translate.openai_request import to_anthropic
from kestrel.translate.openai_response import to_chat_completion
from kestrel.translate.openai_stream import StreamTranslator

log = logging.getLogger("kestrel.openai")

ROUTE = "/v1/chat/completions"
UPSTREAM_TARGET = "/v1/messages"
BROKEN_STREAM = "the upstream connection broke off in the middle of the answer"

OPENAI_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
        "required": ["message", "type", "param", "code"]}},
    "required": ["error"],
}
CHAT_REQUEST = {
    "type": "object",
    "description": "OpenAI Chat Completions request; see the README for what is translated, "
                   "clamped, refused or ignored.",
    "properties": {
        "model": {"type": "string", "description": "A Claude model id, or a MODEL_ALIASES name"},
        "messages": {"type": "array", "items": {"type": "object"}},
        "stream": {"type": "boolean"},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "reasoning_effort": {"type": "string",
                             "enum": ["none", "minimal", "low", "medium", "high", "xhigh"]},
        "tools": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["model", "messages"],
}
CHAT_COMPLETION = {
    "type": "object",
    "description": "A chat.completion; with stream true, text/event-stream of "
                   "chat.completion.chunk objects ending in data: [DONE].",
    "properties": {"id": {"type": "string"}, "object": {"const": "chat.completion"},
                   "created": {"type": "integer"}, "model": {"type": "string"},
                   "choices": {"type": "array", "items": {"type": "object"}},
                   "usage": {"type": "object"}},
    "required": ["id", "object", "created", "model", "choices", "usage"],
}


class OpenAIApi:
    def __init__(self, forwarder: Forwarder, meter: KeyMeter, aliases: Mapping[str, str],
                 clock: Callable[[], float] = time.time) -> None:
        self._forwarder = forwarder
        self._meter = meter
        self._aliases = aliases
        self._clock = clock

    def endpoints(self) -> list[Endpoint]:
        errors = {status: OPENAI_ERROR for status in (400, 401, 403, 404, 413, 429, 500, 503)}
        return [Endpoint("POST", ROUTE, self.chat_completions,
                         "OpenAI Chat Completions, streaming or not, translated to Claude",
                         "openai", Auth.CLIENT, request_schema=CHAT_REQUEST,
                         responses={200: CHAT_COMPLETION, **errors})]

    async def chat_completions(self, request: Request) -> Response:
        key: ApiKey = request.state["api_key"]
        start = CallStart(request, key, ROUTE, UPSTREAM_TARGET)
        model: str | None = None
        try:
            try:
                parsed = parse_body(await request.body())
            except http.HTTPError as exc:  # too large, or the client stopped sending
                raise from_http_error(exc) from None
            named = parsed.get("model")
            model = named if isinstance(named, str) else None
            translation = to_anthropic(parsed, self._aliases)
        except KestrelError as exc:
            self._forwarder.record(start.call(model=model), status=exc.status,
                                   error_type=exc.type,
                                   error_message=exc.message)
            raise
        body = translation.body
        forwarded = start.call(
            model=body["model"], headers=_upstream_headers(request.headers),
            body=compact(body).encode(), stream=translation.stream,
            conversation=conversation_key(request.headers.get("x-claude-code-session-id"),
                                          body, key.id), own_body=True)
        admit(self._forwarder, self._meter, key, forwarded, now=self._clock())
        relay = await forward_admitted(self._forwarder, forwarded)
        if not 200 <= relay.status < 300:
            raise _relayed_error(relay)
        relayed = relay.headers  # the upstream's fields but its content type: the body is ours
        headers = [("x-kestrel-request-id", request.request_id)]
        created = int(self._clock())
        if translation.stream:
            translator = StreamTranslator(created=created,
                                          include_usage=translation.include_usage)
            stream: bytes | AsyncIterator[bytes] = (
                translator.feed(relay.body) + translator.close()
                if isinstance(relay.body, bytes) else _TranslatedStream(relay.body, translator))
            return Response(relay.status, [("content-type", "text/event-stream"),
                                           ("cache-control", "no-cache"), *headers], stream,
                            relayed)
        message = relay.message if relay.message is not None else _json(relay.body)
        if message.get("type") != "message":
            raise UpstreamError("the upstream answered without a message")
        return json_text_response(to_chat_completion(message, created=created), relay.status,
                                  headers, relayed)


def _upstream_headers(headers: http.Headers) -> list[tuple[bytes, bytes]]:
    """The client's headers, with an API version when the client sent none. The forwarder
    drops its credential and the hop-by-hop fields, and (`own_body`) puts our content type,
    for the body we wrote, in place of the client's."""
    if "anthropic-version" in headers:
        return headers.raw
    return [*headers.raw, (b"anthropic-version", DEFAULT_ANTHROPIC_VERSION)]


def _json(body: bytes | AsyncIterator[bytes]) -> dict[str, Any]:
    try:
        value = json.loads(body) if isinstance(body, bytes) else None
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {}


def _relayed_error(relay: Relay) -> KestrelError:
    """The client's own error as Anthropic judged it (bad request, unknown model...), with its
    status and message, for the OpenAI surface to render."""
    error = _json(relay.body).get("error")
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    exc = KestrelError(message if isinstance(message, str) and message
                       else f"the upstream answered {relay.status}")
    exc.status = relay.status
    kind = error.get("type")
    exc.type = kind if isinstance(kind, str) else "api_error"
    return exc


class _TranslatedStream:
    """The upstream's SSE bytes, translated chunk by chunk as they arrive.

    A class rather than an async generator for the reason `StreamRelay` gives: the server may
    close the body without ever iterating it (client gone right after the head), and a
    generator that never started skips its cleanup, which here is closing the upstream stream
    (so generation stops and the request is logged).

    The upstream is read to its end even after the translation ended (`[DONE]` or an error
    event sent): Anthropic closes right after `message_stop`, and only a stream read to its
    end is logged as complete rather than as a client disconnect.
    """

    def __init__(self, upstream: AsyncIterator[bytes], translator: StreamTranslator) -> None:
        self._upstream = upstream
        self._translator = translator
        self._finished = False

    def __aiter__(self) -> _TranslatedStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._finished:
            try:
                chunk = await anext(self._upstream)
            except StopAsyncIteration:
                self._finished = True
                out = self._translator.close()
            except Exception as exc:  # a transport error: the relay logged it, tell the client
                log.warning("upstream stream failed: %s", type(exc).__name__)
                self._finished = True
                out = self._translator.fail("api_error", BROKEN_STREAM)
            else:
                out = self._translator.feed(chunk)
            if out:
                return out
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Closed early (client gone, server stopping): close the upstream, which logs it."""
        self._finished = True
        close = getattr(self._upstream, "aclose", None)
        if close is not None:
            await close()
