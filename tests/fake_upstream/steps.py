"""Scripted behaviours of the fake Anthropic: one `Step` is consumed per request.

Build steps with the functions here rather than by hand: they name the failure modes a proxy
meets (rate limits, overload, resets at every stage of an answer, bytes that are not HTTP,
bodies that are not JSON, streams that end early) in the words the tests use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import RecordedRequest

# Status Anthropic uses for each error type, for steps that only name a type.
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

INVALID_JSON = b'{"type": "message", "id": "msg_fake", "content": [{"type": "text", "te<html>'
"""The body of `invalid_json()`: starts like a message, then is cut off by an HTML page."""

# Kinds whose stream stops after `n_events` events: the record keeps only what was sent.
TRUNCATING = frozenset({"cut", "stall", "reset_mid", "end_early"})
# Kinds that break a non-streamed answer off after half its body (`end_early` instead sends
# half a message as a whole body).
BREAKS_OFF = frozenset({"cut", "stall", "reset_mid"})
# Kinds that send no body at all.
BODILESS = frozenset({"hang", "reset", "reset_after_headers", "garbage"})
# Kinds where the fake itself ends the connection: the client did not go away.
OURS = frozenset({"reset", "reset_after_headers", "reset_mid", "garbage", "cut"})


@dataclass(frozen=True)
class Step:
    """One scripted behaviour. Build them with the functions below rather than by hand."""

    kind: str
    status: int = 200
    error_type: str | None = None
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    n_events: int = 0
    delay: float = 0.0
    gzip: bool = False
    text: str | None = None
    usage: tuple[tuple[str, int], ...] = ()
    event_interval: float = 0.0
    chunk_size: int | None = None
    retry_after: int | None = None
    streams_only: bool = False
    """Only streaming requests get this step; the others are answered with `success()`."""
    tool: tuple[str, str] | None = None
    """`tool_call()`: the name of the tool the answer calls and its input, as JSON text."""
    when: Callable[[RecordedRequest], bool] | None = None
    """`only_for()`: which requests may take this step; the others pass it by."""


def success(
    *,
    text: str | None = None,
    usage: Mapping[str, int] | None = None,
    headers: Mapping[str, str] | None = None,
    gzip: bool = False,
    event_interval: float = 0.0,
    chunk_size: int | None = None,
) -> Step:
    """The canned reply (JSON or SSE, as the request asks).

    `text` replaces the text block; `usage` overrides usage fields (e.g. cache tokens);
    `gzip` compresses a JSON body when the request accepts gzip; `event_interval` paces the SSE
    events; `chunk_size` writes the stream in pieces of that many bytes, splitting events.
    """
    return Step(
        "success",
        text=text,
        usage=tuple((usage or {}).items()),
        headers=tuple((headers or {}).items()),
        gzip=gzip,
        event_interval=event_interval,
        chunk_size=chunk_size,
    )


def tool_call(name: str, input: Mapping[str, Any], *, text: str | None = None) -> Step:
    """A message that asks the client to run the tool `name` with `input`, whatever tools the
    request offers: a text block (`text`, by default `TOOL_PREAMBLE`; "" for none), then one
    `tool_use` block, `stop_reason` "tool_use". Streamed as Anthropic does: the tool_use block
    starts with an empty input, which then arrives in `input_json_delta` pieces. What a test
    scripts to drive an agent (Claude Code) through a tool round trip."""
    return Step("success", text=text, tool=(name, json.dumps(dict(input), ensure_ascii=False)))


def error(
    status: int,
    type: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    gzip: bool = False,
) -> Step:
    """An Anthropic error answer: `{"type": "error", "error": {...}, "request_id": ...}`."""
    return Step(
        "error",
        status=status,
        error_type=type,
        message=message,
        headers=tuple((headers or {}).items()),
        gzip=gzip,
    )


def rate_limited(retry_after: int = 30, *, message: str | None = None) -> Step:
    """A 429 as Anthropic sends it for a per-minute window: `retry-after` and the exhausted
    `anthropic-ratelimit-requests-*` headers (reset in RFC 3339)."""
    return Step(
        "rate_limited",
        status=429,
        error_type="rate_limit_error",
        message=message
        or "This request would exceed the rate limit for your organization of 50 requests "
        "per minute.",
        retry_after=retry_after,
    )


def overloaded() -> Step:
    return error(529, "overloaded_error", "Overloaded")


def stream_error_after(
    n_events: int, type: str = "overloaded_error", message: str | None = None
) -> Step:
    """A 200 stream that sends `n_events` events, then `event: error`, then ends cleanly.
    A non-streaming request gets the error as a plain error answer instead."""
    return Step(
        "stream_error",
        status=ERROR_STATUS.get(type, 500),
        error_type=type,
        message=message or ("Overloaded" if type == "overloaded_error" else "Internal error"),
        n_events=n_events,
    )


def hang() -> Step:
    """Read the request, never answer (until the client goes away or the server stops)."""
    return Step("hang")


def reset_before_headers() -> Step:
    """Read the request, then reset the connection (TCP RST) without a byte of answer."""
    return Step("reset")


def reset_after_headers() -> Step:
    """Send a 200's status line and headers, then reset the connection before any body byte."""
    return Step("reset_after_headers")


def cut_stream_after(n_events: int) -> Step:
    """Send `n_events` events, then close the connection without ending the chunked body.
    A non-streaming request gets half its JSON body, then the close."""
    return Step("cut", n_events=n_events)


def reset_mid_stream(n_events: int) -> Step:
    """Send `n_events` events, then reset the connection (TCP RST) in the middle of the body.
    A non-streaming request gets half its JSON body, then the reset."""
    return Step("reset_mid", n_events=n_events)


def end_stream_after(n_events: int) -> Step:
    """Send `n_events` events and end the body properly, so HTTP sees a complete answer whose
    stream has no `message_stop`. A non-streaming request gets the first half of its JSON
    framed as a complete body (a 200 whose message is cut short)."""
    return Step("end_early", n_events=n_events)


def stall_stream_after(n_events: int) -> Step:
    """Send `n_events` events, then nothing more, forever: for client-disconnect tests."""
    return Step("stall", n_events=n_events)


def delay(seconds: float, then: Step | None = None) -> Step:
    """Wait `seconds` before answering with `then` (default: success)."""
    return replace(then if then is not None else success(), delay=seconds)


def garbage() -> Step:
    """Answer with bytes that are not HTTP, then close."""
    return Step("garbage")


def invalid_json() -> Step:
    """A well-framed 200 `application/json` whose body is not JSON (`INVALID_JSON`), whatever
    the request asked for: what a broken gateway in front of the API may send."""
    return Step("invalid_json")


def only_streams(step: Step) -> Step:
    """`step` for streaming requests, a plain success for the others: a fault that can only
    happen to a stream (mid-stream) without the non-streamed requests failing too."""
    return replace(step, streams_only=True)


def only_for(accepts: Callable[[RecordedRequest], bool], step: Step) -> Step:
    """`step` for the next request `accepts` takes; a request it refuses passes it by (it stays
    queued where it is) and is answered as if it were not there: by the `ANY` queue, then the
    default. For a client that sends requests of its own between the ones a test scripts
    (Claude Code's side requests between its conversation turns). In a default, a refused
    request gets the `ANY` default, else `success()`.

    `accepts` sees the request as it will be recorded (step and answer not yet decided) and
    runs under the fake's lock: it must not call the fake."""
    return replace(step, when=accepts)
