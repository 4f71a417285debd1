"""Anthropic SSE stream → OpenAI chat.completion.chunk stream, incrementally.

The property at the end ties the two directions of translation together: any message, streamed
the way Anthropic streams it and cut into arbitrary pieces, reassembles (as the OpenAI SDKs
accumulate chunks) into the same completion as the message translated whole.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.jsontext import compact
from kestrel.translate.openai_response import FINISH_REASONS, to_chat_completion
from kestrel.translate.openai_stream import StreamTranslator
from kestrel.translate.sse import SseDecoder

CREATED = 1_700_000_000
MODEL = "claude-sonnet-4-6"


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def start(**usage: int) -> bytes:
    return sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1, **usage}}})


def block(index: int, content: dict[str, Any]) -> bytes:
    return sse("content_block_start", {"type": "content_block_start", "index": index,
                                       "content_block": content})


def delta(index: int, **fields: Any) -> bytes:
    return sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": fields})


def stop(index: int) -> bytes:
    return sse("content_block_stop", {"type": "content_block_stop", "index": index})


def end(stop_reason: str = "end_turn", **usage: int) -> bytes:
    return sse("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                 "usage": {"output_tokens": 7, **usage}}) \
        + sse("message_stop", {"type": "message_stop"})


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def translate(*pieces: bytes, include_usage: bool = False,
              closed: bool = True) -> tuple[list[Any], StreamTranslator]:
    """Feed the pieces, close, and decode what came out: chunk objects, and "[DONE]". Each
    chunk, written as text around its values, must be what the encoder makes of it."""
    translator = StreamTranslator(created=CREATED, include_usage=include_usage)
    out = b"".join(translator.feed(piece) for piece in pieces)
    if closed:
        out += translator.close()
    events = SseDecoder().feed(out)
    chunks = [e.data if e.data == "[DONE]" else json.loads(e.data) for e in events]
    assert [e.data for e in events] == [c if c == "[DONE]" else compact(c) for c in chunks]
    return chunks, translator


def deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [e["choices"][0]["delta"] for e in events if isinstance(e, dict) and e.get("choices")]


def test_text_stream() -> None:
    events, translator = translate(start(), PING, block(0, {"type": "text", "text": ""}),
                                   delta(0, type="text_delta", text="Hel"),
                                   delta(0, type="text_delta", text="lo"), stop(0), end())
    assert events[0] == {"id": "chatcmpl-msg_01", "object": "chat.completion.chunk",
                         "created": CREATED, "model": MODEL,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "logprobs": None, "finish_reason": None}]}
    assert deltas(events) == [{"role": "assistant", "content": ""}, {"content": "Hel"},
                              {"content": "lo"}, {}]
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]" and translator.ended
    assert all("usage" not in e for e in events[:-1])  # only with include_usage


def test_thinking_becomes_reasoning_content_and_signatures_are_dropped() -> None:
    events, _ = translate(start(), block(0, {"type": "thinking", "thinking": "", "signature": ""}),
                          delta(0, type="thinking_delta", thinking="Hmm."),
                          delta(0, type="signature_delta", signature="EqQBCkYIARgC"), stop(0),
                          block(1, {"type": "redacted_thinking", "data": "opaque"}), stop(1),
                          block(2, {"type": "text", "text": ""}),
                          delta(2, type="text_delta", text="Yes."), stop(2), end())
    assert deltas(events)[1:-1] == [{"reasoning_content": "Hmm."}, {"content": "Yes."}]


def test_parallel_tool_calls_stream_with_their_own_indices() -> None:
    events, _ = translate(
        start(), block(0, {"type": "text", "text": ""}), delta(0, type="text_delta", text="Ok."),
        stop(0),
        block(1, {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
        delta(1, type="input_json_delta", partial_json=""),
        delta(1, type="input_json_delta", partial_json='{"city": '),
        delta(1, type="input_json_delta", partial_json='"Paris"}'), stop(1),
        block(2, {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}),
        delta(2, type="input_json_delta", partial_json=""), stop(2),
        end("tool_use"))
    assert deltas(events)[2:] == [
        {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                         "function": {"name": "weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                         "function": {"name": "now", "arguments": ""}}]},
        # no input streamed at all: "{}", so the arguments are still JSON
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_include_usage_adds_a_usage_chunk_and_null_usage_elsewhere() -> None:
    events, _ = translate(start(cache_read_input_tokens=100, cache_creation_input_tokens=20),
                          end(output_tokens=9), include_usage=True)
    assert [e["usage"] for e in events[:-2]] == [None, None]
    assert events[-2] == {"id": "chatcmpl-msg_01", "object": "chat.completion.chunk",
                          "created": CREATED, "model": MODEL, "choices": [],
                          "usage": {"prompt_tokens": 130, "completion_tokens": 9,
                                    "total_tokens": 139,
                                    "prompt_tokens_details": {"cached_tokens": 100}}}
    assert events[-1] == "[DONE]"


def test_an_upstream_error_event_ends_the_stream_without_done() -> None:
    error = sse("error", {"type": "error", "error": {"type": "overloaded_error",
                                                     "message": "Overloaded"}})
    events, translator = translate(start(), block(0, {"type": "text", "text": ""}),
                                   delta(0, type="text_delta", text="Hi"), error, end())
    assert events[-1] == {"error": {"message": "Overloaded", "type": "server_error",
                                    "param": None, "code": "overloaded_error"}}
    assert "[DONE]" not in events and translator.ended
    assert translator.feed(start()) == b""


def test_a_stream_cut_short_ends_with_an_error_event() -> None:
    events, _ = translate(start(), block(0, {"type": "text", "text": ""}),
                          delta(0, type="text_delta", text="Hi"))
    assert events[-1]["error"]["message"] == \
        "the upstream stream ended before the message was complete"
    assert events[-1]["error"]["type"] == "server_error"


def test_a_broken_connection_can_be_reported_once() -> None:
    translator = StreamTranslator(created=CREATED, include_usage=False)
    translator.feed(start())
    first = translator.fail("api_error", "connection lost")
    assert json.loads(first.decode().removeprefix("data: "))["error"]["message"] == \
        "connection lost"
    assert translator.fail("api_error", "again") == b"" and translator.close() == b""


def test_garbage_events_are_skipped() -> None:
    events, _ = translate(start(), b"data: not json\n\ndata: [1]\n\n", b"event: x\n\n", end())
    assert deltas(events) == [{"role": "assistant", "content": ""}, {}]


# --- the property: streamed and whole translations agree ---------------------------------------

_json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
_inputs = st.dictionaries(st.text(min_size=1, max_size=6),
                          _json_scalars | st.lists(_json_scalars, max_size=3), max_size=4)
_blocks = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=40)),
    st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig=="},
              st.text(max_size=40)),
    st.builds(lambda i, n, x: {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": x},
              st.integers(0, 10**9), st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _inputs),
    st.just({"type": "redacted_thinking", "data": "opaque"}),
)
_messages = st.builds(
    lambda content, stop_reason, usage: {
        "id": "msg_prop", "type": "message", "role": "assistant", "model": MODEL,
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": dict(zip(("input_tokens", "output_tokens", "cache_read_input_tokens",
                           "cache_creation_input_tokens"), usage, strict=True))},
    st.lists(_blocks, max_size=6), st.sampled_from(sorted(FINISH_REASONS)),
    st.tuples(*[st.integers(0, 10**6)] * 4))


def _cut(data: st.DataObject, text: str) -> list[str]:
    """`text` in pieces at points Hypothesis chooses."""
    points = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
    edges = [0, *[p for p in points if p < len(text)], len(text)]
    return [text[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _anthropic_stream(message: dict[str, Any], data: st.DataObject) -> bytes:
    """The message as Anthropic streams it: deltas in arbitrary pieces, usage at both ends."""
    usage = message["usage"]
    first = {**message, "content": [], "stop_reason": None,
             "usage": {**usage, "output_tokens": 1}}
    wire = [sse("message_start", {"type": "message_start", "message": first}), PING]
    for i, content in enumerate(message["content"]):
        kind = content["type"]
        if kind == "text":
            wire.append(block(i, {"type": "text", "text": ""}))
            wire += [delta(i, type="text_delta", text=p) for p in _cut(data, content["text"])]
        elif kind == "thinking":
            wire.append(block(i, {"type": "thinking", "thinking": "", "signature": ""}))
            wire += [delta(i, type="thinking_delta", thinking=p)
                     for p in _cut(data, content["thinking"])]
            wire.append(delta(i, type="signature_delta", signature=content["signature"]))
        elif kind == "tool_use":
            wire.append(block(i, {**content, "input": {}}))
            raw = json.dumps(content["input"]) if content["input"] else ""
            wire += [delta(i, type="input_json_delta", partial_json=p)
                     for p in ["", *_cut(data, raw)]]
        else:
            wire.append(block(i, content))
        wire.append(stop(i))
    wire.append(end(message["stop_reason"], **usage))
    return b"".join(wire)


def _reassemble(events: list[Any]) -> dict[str, Any]:
    """What a client builds from the chunks, accumulating each field as the OpenAI SDKs do."""
    assert events[-1] == "[DONE]"
    reply: dict[str, Any] = {}
    calls: dict[int, dict[str, Any]] = {}
    completion: dict[str, Any] = {}
    for event in events[:-1]:
        completion.update(id=event["id"], created=event["created"], model=event["model"])
        if not event["choices"]:
            completion["usage"] = event["usage"]
            continue
        choice = event["choices"][0]
        for name, value in choice["delta"].items():
            if name == "tool_calls":
                for piece in value:
                    call = calls.setdefault(piece["index"], {"arguments": ""})
                    assert ("id" in piece) == ("id" not in call), "id only on the first chunk"
                    call.update({k: piece[k] for k in ("id", "type") if k in piece})
                    call.setdefault("name", piece["function"].get("name"))
                    call["arguments"] += piece["function"]["arguments"]
            else:
                reply[name] = reply.get(name, "") + value
        if choice["finish_reason"] is not None:
            completion["finish_reason"] = choice["finish_reason"]
    assert sorted(calls) == list(range(len(calls)))
    reply["tool_calls"] = [calls[i] for i in sorted(calls)]
    completion["reply"] = reply
    return completion


@settings(max_examples=150, deadline=None)
@given(message=_messages, data=st.data())
def test_any_message_streamed_in_any_pieces_reassembles_to_the_whole_translation(
        message: dict[str, Any], data: st.DataObject) -> None:
    wire = _anthropic_stream(message, data)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(wire) - 1), max_size=12)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    events, _ = translate(*pieces, include_usage=True)
    got = _reassemble(events)

    whole = json.loads(to_chat_completion(message, created=CREATED))
    choice = whole["choices"][0]
    expected_reply = choice["message"]
    assert (got["id"], got["created"], got["model"]) == (whole["id"], CREATED, MODEL)
    assert got["finish_reason"] == choice["finish_reason"]
    assert got["usage"] == whole["usage"]
    reply = got["reply"]
    assert reply["role"] == "assistant"
    # The first chunk says content "" before it can know the answer is only tool calls.
    assert (reply["content"] or None) == (expected_reply["content"] or None)
    assert reply.get("reasoning_content", "") == expected_reply.get("reasoning_content", "")
    expected_calls = expected_reply.get("tool_calls", [])
    assert [(c["id"], c["type"], c["name"]) for c in reply["tool_calls"]] == [
        (c["id"], c["type"], c["function"]["name"]) for c in expected_calls]
    assert [json.loads(c["arguments"]) for c in reply["tool_calls"]] == [
        json.loads(c["function"]["arguments"]) for c in expected_calls]


@pytest.mark.parametrize("size", [1, 7])
def test_byte_by_byte_equals_whole(size: int) -> None:
    wire = start() + block(0, {"type": "text", "text": ""}) + \
        delta(0, type="text_delta", text="Ünïcödé ✓") + stop(0) + end()
    whole, _ = translate(wire)
    split, _ = translate(*(wire[i:i + size] for i in range(0, len(wire), size)))
    assert split == whole and split[-1] == "[DONE]"
