"""A fake Anthropic API: a real HTTP/1.1 server on 127.0.0.1 speaking Anthropic's wire format.

It runs on stdlib asyncio + h11 in a background thread with its own event loop, so synchronous
tests and tests running their own loop (`asyncio.run`) can both talk to it:

    with FakeAnthropic() as up:
        up.script("sk-ant-a", [error(429, "rate_limit_error", "slow down",
                                     headers={"retry-after": "30"}), success()])
        client = anthropic.Anthropic(base_url=up.base_url, api_key="sk-ant-a", max_retries=0)
        ...
        assert up.requests[-1].credential == "sk-ant-a"

Behaviour is scripted per credential (the `x-api-key` header, else an `Authorization: Bearer`
token): `script()` queues steps (`steps.py`), one consumed per request (any endpoint), then the
credential's default applies (`set_default()`), else success. The `ANY` credential's queue
serves requests whose own queue is empty. A step made with `only_for(accepts, step)` is taken
only by a request `accepts`; the others pass it by.

Routes: `POST /v1/messages` (JSON message, or an SSE stream when the body says `"stream": true`),
`POST /v1/messages/count_tokens`, `GET /v1/models`, `GET /v1/models/{id}`; anything else is a
404 in Anthropic's error shape. The query string is ignored for routing (Claude Code sends
`?beta=true`) but kept in the record.

Canned replies are deterministic functions of the request (`replies.py`). Every request is
recorded with the usage it was answered with and the exact body bytes it was sent (`answer`),
so tests can check that logs add up and that a client got the answer made for its request.

`FakeAnthropic(tls=context)` serves HTTPS instead, at `https://localhost:PORT` (on 127.0.0.1
and ::1), with a certificate from a test CA (`support/test_ca.py`): what egress proxies carry.

The package: `server.py` (connections, scripts, records), `steps.py` (the behaviours),
`answers.py` (planning an answer), `replies.py` (canned content), `wire.py` (sending it, or
breaking off).
"""

from __future__ import annotations

from .answers import Answer, AnswerBook
from .replies import (
    DEFAULT_MODEL,
    DEFAULT_MODELS,
    DEFAULT_TEXT,
    THINKING_TEXT,
    TOOL_PREAMBLE,
)
from .server import ANY, LISTEN_BACKLOG, FakeAnthropic, RecordedRequest
from .steps import (
    ERROR_STATUS,
    INVALID_JSON,
    Step,
    cut_stream_after,
    delay,
    end_stream_after,
    error,
    garbage,
    hang,
    invalid_json,
    only_for,
    only_streams,
    overloaded,
    rate_limited,
    reset_after_headers,
    reset_before_headers,
    reset_mid_stream,
    stall_stream_after,
    stream_error_after,
    success,
    tool_call,
)

__all__ = [
    "ANY",
    "DEFAULT_MODEL",
    "DEFAULT_MODELS",
    "DEFAULT_TEXT",
    "ERROR_STATUS",
    "INVALID_JSON",
    "LISTEN_BACKLOG",
    "THINKING_TEXT",
    "TOOL_PREAMBLE",
    "Answer",
    "AnswerBook",
    "FakeAnthropic",
    "RecordedRequest",
    "Step",
    "cut_stream_after",
    "delay",
    "end_stream_after",
    "error",
    "garbage",
    "hang",
    "invalid_json",
    "only_for",
    "only_streams",
    "overloaded",
    "rate_limited",
    "reset_after_headers",
    "reset_before_headers",
    "reset_mid_stream",
    "stall_stream_after",
    "stream_error_after",
    "success",
    "tool_call",
]
