"""An Anthropic Messages stream, translated incrementally into OpenAI `chat.completion.chunk`s.
Pure: bytes in, bytes out, whatever the pieces the bytes arrive in.

Wire facts relied on (Anthropic streaming): `message_start` carries the id, model and the first
usage; each content block opens with `content_block_start` (a tool_use block with its id and
name), grows by `content_block_delta` (`text_delta`, `thinking_delta`, `signature_delta`,
`input_json_delta`) and ends with `content_block_stop`; `message_delta` brings the stop reason
and cumulative usage; `message_stop` ends a complete message; `ping` means nothing;
`event: error` may arrive after a 200.

OpenAI side (what the official SDKs accumulate, key by key): the first chunk's delta carries
`role`; text arrives as `content` pieces, thinking as `reasoning_content` pieces; a tool call
appears with its `index` (its place among the tool calls), `id`, `type` and `function.name` on
its first chunk only (the SDKs concatenate strings, so repeating them would corrupt them) and its
`function.arguments` in pieces after; a last chunk has an empty delta and the `finish_reason`;
with `include_usage`, every chunk has `"usage": null` and one more chunk with no choices carries
the usage; then `data: [DONE]`. An upstream error becomes a `data: {"error": {...}}` event and
the stream ends there, without `[DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kestrel.jsontext import compact, parse_text, value_text
from kestrel.translate.openai_errors import stream_error_object
from kestrel.translate.openai_response import (
    finish_reason,
    opening,
    read_usage,
    tool_call,
    usage_text,
)
from kestrel.translate.sse import SseDecoder, SseError, encode_event

DONE = b"data: [DONE]\n\n"
CHUNK = "chat.completion.chunk"
CUT_SHORT = "the upstream stream ended before the message was complete"


@dataclass
class _ToolCall:
    index: int  # among the message's tool calls, not among its content blocks
    start_input: Any
    arguments_sent: bool = False


class ChunkTranslator:
    """Anthropic stream events (parsed JSON objects) in, chunks out as JSON text.

    Text, as `to_chat_completion` writes it and for its reason: a chunk is mostly the opening
    fields every chunk repeats, written once an answer here, around a delta of one field.
    """

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self._created = created
        self._include_usage = include_usage
        self._opening = opening(CHUNK, None, None, created)
        # Every chunk has `"usage": null` when the client asked for usage, but the last.
        self._closing = ',"usage":null}' if include_usage else "}"
        self._usage: dict[str, int] = {}
        self._stop_reason: Any = None
        self._tools: dict[int, _ToolCall] = {}  # by content block index
        self.complete = False
        """`message_stop` seen: the chunks so far make the whole answer."""

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            message = message if isinstance(message, dict) else {}
            self._opening = opening(CHUNK, message.get("id"), message.get("model"),
                                    self._created)
            read_usage(message.get("usage"), self._usage)
            return [self._chunk('{"role":"assistant","content":""}')]
        if kind == "content_block_start":
            return self._block_start(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._block_delta(event.get("index"), event.get("delta"))
        if kind == "content_block_stop":
            return self._block_stop(event.get("index"))
        if kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self._stop_reason = delta["stop_reason"]
            read_usage(event.get("usage"), self._usage)
            return []
        if kind == "message_stop":
            self.complete = True
            chunks = [self._chunk("{}", finish_reason(self._stop_reason))]
            if self._include_usage:
                chunks.append(self._opening + '[],"usage":' + usage_text(self._usage) + "}")
            return chunks
        return []  # ping, and event types added after this was written

    def _block_start(self, index: Any, block: Any) -> list[str]:
        if not isinstance(block, dict):
            return []
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._chunk(_one("content", block["text"]))]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk(_one("reasoning_content", block["thinking"]))]
        if kind == "tool_use" and isinstance(index, int):
            call = _ToolCall(len(self._tools), block.get("input"))
            self._tools[index] = call
            return [self._chunk(_one("tool_calls",
                                     [{"index": call.index, **tool_call(block, "")}]))]
        return []

    def _block_delta(self, index: Any, delta: Any) -> list[str]:
        if not isinstance(delta, dict):
            return []
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk(_one("content", delta["text"]))]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk(_one("reasoning_content", delta["thinking"]))]
        call = self._tools.get(index) if isinstance(index, int) else None
        if kind == "input_json_delta" and call is not None and delta.get("partial_json"):
            call.arguments_sent = True
            return [self._arguments(call, delta["partial_json"])]
        return []  # signature and citation deltas have no counterpart

    def _block_stop(self, index: Any) -> list[str]:
        call = self._tools.get(index) if isinstance(index, int) else None
        if call is None or call.arguments_sent:
            return []
        # A tool without parameters streams no input at all; clients parse the arguments, and
        # an empty string is not JSON.
        call.arguments_sent = True
        return [self._arguments(call, json.dumps(call.start_input or {}, ensure_ascii=False))]

    def _arguments(self, call: _ToolCall, piece: str) -> str:
        return self._chunk(_one("tool_calls", [{"index": call.index,
                                                "function": {"arguments": piece}}]))

    def _chunk(self, delta: str, finish: str | None = None) -> str:
        """A chunk of one choice whose delta is the JSON text `delta`."""
        return (self._opening + '[{"index":0,"delta":' + delta
                + ',"logprobs":null,"finish_reason":'
                + ("null" if finish is None else '"' + finish + '"') + "}]" + self._closing)


def _one(name: str, value: Any) -> str:
    """A delta of one field as JSON text."""
    return '{"' + name + '":' + value_text(value) + "}"


class StreamTranslator:
    """The raw bytes of an Anthropic SSE stream in, the OpenAI SSE stream's bytes out.

    Once `ended` is true (the message is complete, or an error was sent) nothing more will be
    produced: the caller should stop reading the upstream and close it.
    """

    def __init__(self, *, created: int, include_usage: bool) -> None:
        self._decoder = SseDecoder()
        self._chunks = ChunkTranslator(created=created, include_usage=include_usage)
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self.ended:
            return b""
        try:
            events = self._decoder.feed(data)
        except SseError as exc:  # one oversized event is lost; the rest still counts
            events = exc.events
        out: list[bytes] = []
        for event in events:
            try:
                payload = parse_text(event.data)
            except ValueError:
                continue  # not JSON: nothing a client could be shown
            if not isinstance(payload, dict):
                continue
            if payload.get("type", event.event) == "error":
                error = payload.get("error")
                error = error if isinstance(error, dict) else {}
                out.append(self.fail(error.get("type"), error.get("message")))
                break
            out += [encode_event(None, chunk) for chunk in self._chunks.feed(payload)]
            if self._chunks.complete:
                self.ended = True
                out.append(DONE)
                break
        return b"".join(out)

    def close(self) -> bytes:
        """The upstream stream ended: nothing more if the message was complete, else an error
        event saying it was cut short."""
        self._decoder.close()
        return b"" if self.ended else self.fail("api_error", CUT_SHORT)

    def fail(self, kind: str | None, message: str | None) -> bytes:
        """End the stream with an OpenAI error event (an upstream error, or a broken stream)."""
        if self.ended:
            return b""
        self.ended = True
        return encode_event(None, compact(stream_error_object(kind, message)))
