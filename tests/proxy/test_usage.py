"""Usage read on the side of forwarded Anthropic responses: streams and whole messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kestrel.proxy.usage import MessageSummary, StreamUsageTracker, Usage, summarize_message


def sse(event: str, data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    return f"event: {event}\ndata: {text}\n\n".encode()


MESSAGE_START = sse(
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "claude-sonnet-4-6",
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 2000,
                "output_tokens": 1,
            },
        },
    },
)
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
TEXT = (
    sse("content_block_start", {"type": "content_block_start", "index": 0,
                                "content_block": {"type": "text", "text": ""}})
    + sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "text_delta", "text": "Héllo ✓"}})
    + sse("content_block_stop", {"type": "content_block_stop", "index": 0})
)  # fmt: skip
MESSAGE_DELTA = sse(
    "message_delta",
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 15},
    },
)
MESSAGE_STOP = sse("message_stop", {"type": "message_stop"})
FULL_STREAM = MESSAGE_START + PING + TEXT + MESSAGE_DELTA + MESSAGE_STOP


def track(*chunks: bytes) -> StreamUsageTracker:
    tracker = StreamUsageTracker()
    for chunk in chunks:
        tracker.feed(chunk)
    return tracker


def test_whole_stream_in_one_chunk() -> None:
    tracker = track(FULL_STREAM)
    assert tracker.summary() == MessageSummary(
        model="claude-sonnet-4-6",
        stop_reason="end_turn",
        usage=Usage(
            input_tokens=25,
            output_tokens=15,
            cache_creation_input_tokens=100,
            cache_read_input_tokens=2000,
        ),
        error_type=None,
        error_message=None,
        completed=True,
    )
    assert tracker.garbage == 0
    assert tracker.events == 7


def test_stream_fed_byte_by_byte_gives_the_same_summary() -> None:
    tracker = track(*(FULL_STREAM[i : i + 1] for i in range(len(FULL_STREAM))))
    assert tracker.summary() == track(FULL_STREAM).summary()
    assert tracker.garbage == 0


def test_stream_with_crlf_line_endings() -> None:
    assert track(FULL_STREAM.replace(b"\n", b"\r\n")).summary() == track(FULL_STREAM).summary()


def test_not_completed_without_message_stop() -> None:
    summary = track(MESSAGE_START + PING + TEXT + MESSAGE_DELTA).summary()
    assert not summary.completed
    assert summary.usage.output_tokens == 15


def test_message_delta_totals_replace_and_nulls_keep_earlier_values() -> None:
    deltas = [
        {"output_tokens": 5},
        # Cumulative totals: later counts replace earlier ones, they do not add up.
        {"output_tokens": 9, "input_tokens": 40, "cache_read_input_tokens": None},
        {"output_tokens": 12, "cache_creation_input_tokens": 0},
    ]
    chunks = [
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": None}, "usage": u})
        for u in deltas
    ]
    summary = track(MESSAGE_START, *chunks).summary()
    assert summary.usage == Usage(
        input_tokens=40,
        output_tokens=12,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=2000,
    )
    assert summary.stop_reason is None


def test_error_event_mid_stream() -> None:
    error = sse(
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    summary = track(MESSAGE_START + PING + TEXT[:40], TEXT[40:] + error).summary()
    assert summary.error_type == "overloaded_error"
    assert summary.error_message == "Overloaded"
    assert not summary.completed
    assert summary.usage.input_tokens == 25


def test_summary_is_a_snapshot() -> None:
    tracker = track(MESSAGE_START)
    before = tracker.summary()
    tracker.feed(MESSAGE_DELTA + MESSAGE_STOP)
    assert before.usage.output_tokens == 1
    assert not before.completed
    assert tracker.summary().completed


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(b"data: not json\n\n", id="not-json"),
        pytest.param(b"data: [1, 2]\n\n", id="not-an-object"),
        pytest.param(b"data: \xff\xfe{\n\n", id="bad-utf8"),
        pytest.param(sse("message_start", {"type": "message_start", "message": "x"}), id="shape"),
        pytest.param(
            sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": "many"}}),
            id="wrong-type",
        ),
        pytest.param(
            sse("message_delta", {"type": "message_delta", "usage": {"output_tokens": True}}),
            id="bool-is-not-a-count",
        ),
        pytest.param(b"data: " + b"x" * (2 * 1024 * 1024) + b"\n\n", id="oversized-line"),
    ],
)
def test_garbage_is_counted_never_raised(junk: bytes) -> None:
    tracker = track(MESSAGE_START, junk, MESSAGE_DELTA + MESSAGE_STOP)
    assert tracker.garbage >= 1
    summary = tracker.summary()
    assert summary.completed
    assert summary.usage.output_tokens == 15
    assert summary.usage.input_tokens == 25


def test_unknown_events_are_ignored_not_garbage() -> None:
    future = sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "some_future_delta"}})  # fmt: skip
    tracker = track(MESSAGE_START, future, sse("brand_new_event", {"type": "brand_new_event"}))
    assert tracker.garbage == 0


def test_event_type_falls_back_to_the_sse_event_name() -> None:
    summary = track(b"event: message_stop\ndata: {}\n\n").summary()
    assert summary.completed


# --- whole messages ---------------------------------------------------------------------------


def test_summarize_message() -> None:
    body = json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4-7",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 3,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": 7,
            },
        }
    ).encode()
    summary = summarize_message(body)
    assert summary == MessageSummary(
        model="claude-opus-4-7",
        stop_reason="tool_use",
        usage=Usage(input_tokens=10, output_tokens=3, cache_read_input_tokens=7),
        error_type=None,
        error_message=None,
        completed=True,
    )
    # The whole message rides along, so the OpenAI route need not parse the body again.
    assert summary.message == json.loads(body)


def test_summarize_error_body() -> None:
    body = (
        b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens'
        b' has exceeded your per-minute rate limit"},"request_id":"req_011CS"}'
    )
    summary = summarize_message(body)
    assert summary.error_type == "rate_limit_error"
    assert summary.error_message == (
        "Number of request tokens has exceeded your per-minute rate limit"
    )
    assert not summary.completed
    assert summary.usage == Usage()


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b"\xff\xfe", b'{"type":"error","error":"x"}', b'{"type":"other"}'],
)
def test_summarize_garbage_never_raises(body: bytes) -> None:
    summary = summarize_message(body)
    assert not summary.completed
    assert summary.usage == Usage()
