"""Read token usage out of Anthropic Messages responses, on the side of forwarding them.

Nothing here may break a request: the proxy forwards the upstream bytes unchanged and hands a
copy to these readers, so they swallow anything malformed (and count it) instead of raising.

Wire facts relied on (Anthropic Messages API, streaming):
- `message_start` carries `message.model` and the initial `message.usage` (input and cache
  tokens, a small provisional `output_tokens`);
- `message_delta` carries `delta.stop_reason` and a `usage` whose counts are cumulative totals,
  not increments: `output_tokens` always, and input / cache counts when they changed (server
  tools). A field that is absent or null keeps its earlier value;
- `event: error` carries `{"type": "error", "error": {"type": ..., "message": ...}}`, possibly
  after a 200 and some events;
- `message_stop` ends a complete message.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kestrel.domain import USAGE_FIELDS
from kestrel.jsontext import is_count, parse, parse_text
from kestrel.translate.sse import SseDecoder, SseError, SseEvent

# Most of a stream is content deltas and pings, which carry nothing to account for. Anthropic
# names every event after its data's `type`, so the name alone lets us skip decoding their JSON.
_NO_ACCOUNTING = frozenset({"ping", "content_block_start", "content_block_delta",
                            "content_block_stop"})

# An error message kept for the request log: enough to read, bounded like every log field.
_MAX_ERROR_MESSAGE = 500


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # The part of the cache writes kept for an hour (`cache_creation.ephemeral_1h_input_tokens`),
    # billed at a higher rate than the default five minutes.
    cache_creation_1h_tokens: int = 0

    def update(self, raw: object) -> bool:
        """Take every non-null integer field of a `usage` object; False if `raw` is malformed."""
        if not isinstance(raw, dict):
            return False
        ok = True
        for name in USAGE_FIELDS:
            value = raw.get(name)
            if value is not None:
                if is_count(value):
                    setattr(self, name, value)
                else:
                    ok = False
        split = raw.get("cache_creation")
        if isinstance(split, dict):
            value = split.get("ephemeral_1h_input_tokens")
            if value is not None:
                if is_count(value):
                    self.cache_creation_1h_tokens = value
                else:
                    ok = False
        elif split is not None:
            ok = False
        return ok


@dataclass
class MessageSummary:
    model: str | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    error_type: str | None = None
    error_message: str | None = None
    completed: bool = False
    """`message_stop` seen (stream), or a whole message parsed (non-stream)."""
    message: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """The whole message as parsed (non-stream): the OpenAI route translates it without
    parsing the body a second time."""


class StreamUsageTracker:
    """Feed it the raw bytes of an Anthropic SSE stream as they are forwarded.

    `garbage` counts what could not be understood (undecodable or oversized SSE, data that is
    not a JSON object, fields of the wrong type); `events` counts the SSE events seen.
    """

    def __init__(self) -> None:
        self._decoder = SseDecoder(ignore=_NO_ACCOUNTING)
        self._summary = MessageSummary()
        self._decoded = 0
        self.garbage = 0

    def feed(self, chunk: bytes) -> None:
        try:
            events = self._decoder.feed(chunk)
        except SseError as exc:
            self.garbage += 1
            events = exc.events
        for event in events:
            self._decoded += 1
            try:
                self._on_event(event)
            except Exception:  # a reader on the side must never break the stream it reads
                self.garbage += 1

    @property
    def events(self) -> int:
        return self._decoded + self._decoder.ignored

    def summary(self) -> MessageSummary:
        """A snapshot: later `feed()` calls do not change what it returned."""
        return replace(self._summary, usage=replace(self._summary.usage))

    def _on_event(self, event: SseEvent) -> None:
        try:
            payload = parse_text(event.data)
        except ValueError:
            self.garbage += 1
            return
        if not isinstance(payload, dict):
            self.garbage += 1
            return
        kind = payload.get("type", event.event)
        s = self._summary
        if kind == "message_start":
            message = payload.get("message")
            if not isinstance(message, dict):
                self.garbage += 1
                return
            model = message.get("model")
            if isinstance(model, str):
                s.model = model
            if not s.usage.update(message.get("usage", {})):
                self.garbage += 1
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                s.stop_reason = delta["stop_reason"]
            if not s.usage.update(payload.get("usage", {})):
                self.garbage += 1
        elif kind == "message_stop":
            s.completed = True
        elif kind == "error":
            s.error_type, s.error_message = _error_fields(payload)
        # ping, content_block_* and future event types carry nothing we account for.


def summarize_message(body: bytes) -> MessageSummary:
    """Summarize a non-streaming Messages response body, or an Anthropic error body.

    Never raises: an unreadable body gives an empty, not completed, summary.
    """
    summary = MessageSummary()
    try:
        payload = parse(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return summary
    if not isinstance(payload, dict):
        return summary
    if payload.get("type") == "error":
        summary.error_type, summary.error_message = _error_fields(payload)
        return summary
    if payload.get("type") != "message":
        return summary
    model = payload.get("model")
    summary.model = model if isinstance(model, str) else None
    stop_reason = payload.get("stop_reason")
    summary.stop_reason = stop_reason if isinstance(stop_reason, str) else None
    summary.usage.update(payload.get("usage", {}))
    summary.completed = True
    summary.message = payload
    return summary


def _error_fields(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    error = payload.get("error")
    if not isinstance(error, dict):
        return None, None
    kind = error.get("type")
    message = error.get("message")
    return (
        kind if isinstance(kind, str) else None,
        message[:_MAX_ERROR_MESSAGE] if isinstance(message, str) else None,
    )
