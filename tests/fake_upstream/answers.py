"""Deciding what to send for one request: status, headers and body, before a byte is sent.

The answer is planned whole and recorded, then `wire.respond` puts it on the wire (or breaks
off part-way, as the step says). Planning first is what lets a test compare what a client
received with what the upstream produced for that very request.
"""

from __future__ import annotations

import email.utils
import gzip as gzip_lib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .replies import DEFAULT_MODEL, Event, block_events, input_tokens, reply_blocks, sse, usage
from .steps import BODILESS, BREAKS_OFF, INVALID_JSON, TRUNCATING, Step, error


@dataclass
class Answer:
    """What to send for one request, decided (and recorded) before sending starts."""

    step: Step
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    plain: bytes = b""
    """`body` before any gzip: what the client reads once its HTTP library decoded it."""
    events: list[bytes] = field(default_factory=list)
    stream: bool = False
    usage: dict[str, int] | None = None

    @property
    def half(self) -> int:
        """Where a non-streamed body is cut by the truncating steps."""
        return len(self.body) // 2

    def sent_body(self) -> bytes:
        """The (decoded) body bytes the client is sent, up to where the step breaks off."""
        if self.step.kind in BODILESS:
            return b""
        if self.stream:
            return b"".join(self.events)
        if self.step.kind in BREAKS_OFF:
            return self.plain[: self.half]
        return self.plain


class AnswerBook:
    """Builds answers in Anthropic's wire format; `next_id` mints the unique ids they carry."""

    def __init__(self, models: list[tuple[str, str, str]],
                 next_id: Callable[[str], str]) -> None:
        self.models = models
        self._next_id = next_id

    def plan(
        self,
        step: Step,
        method: str,
        route: str,
        target: str,
        req: dict[str, Any],
        body: bytes,
        headers: Mapping[str, str],
        request_id: str,
    ) -> Answer:
        if step.streams_only and req.get("stream") is not True:
            step = Step("success")
        kind = step.kind
        accepts_gzip = "gzip" in headers.get("accept-encoding", "").lower()
        if kind in ("error", "rate_limited") or (kind == "stream_error" and not req.get("stream")):
            return self.error_answer(step, request_id, kind, accepts_gzip)
        if kind in ("hang", "reset", "garbage"):
            return Answer(step)
        if kind == "invalid_json":
            answer = self.json_answer(step, 200, None, request_id, False)
            answer.body = answer.plain = INVALID_JSON
            answer.headers = [(k, str(len(INVALID_JSON)) if k == "content-length" else v)
                              for k, v in answer.headers]
            return answer
        if route == "/v1/messages":
            if req.get("stream") is True:
                return self.stream_answer(step, req, body, request_id)
            message = self.message(step, req, body)
            answer = self.json_answer(step, 200, message, request_id, accepts_gzip)
            answer.usage = dict(message["usage"])
            if kind == "end_early":  # framed as complete, but only half a message
                answer.body = answer.plain = answer.plain[: answer.half]
                answer.headers = [(k, str(len(answer.body)) if k == "content-length" else v)
                                  for k, v in answer.headers]
            return answer
        elif route == "/v1/messages/count_tokens":
            payload: object = {"input_tokens": input_tokens(body)}
        elif route == "/v1/models":
            payload = self.model_list(target)
        else:
            model = self.model(route.rsplit("/", 1)[-1])
            if model is None:
                return self.error_answer(
                    error(404, "not_found_error", f"model: {route.rsplit('/', 1)[-1]}"),
                    request_id,
                    kind,
                )
            payload = model
        return self.json_answer(step, 200, payload, request_id, accepts_gzip)

    def common_headers(self, request_id: str) -> list[tuple[str, str]]:
        reset = datetime.fromtimestamp(time.time() + 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = [
            ("date", email.utils.formatdate(usegmt=True)),
            ("request-id", request_id),
            ("anthropic-organization-id", "00000000-0000-4000-8000-000000000000"),
        ]
        for window, limit in (("requests", 50), ("input-tokens", 40000), ("output-tokens", 8000)):
            headers += [
                (f"anthropic-ratelimit-{window}-limit", str(limit)),
                (f"anthropic-ratelimit-{window}-remaining", str(limit - 1)),
                (f"anthropic-ratelimit-{window}-reset", reset),
            ]
        return headers

    def json_answer(
        self,
        step: Step,
        status: int,
        payload: object,
        request_id: str,
        accepts_gzip: bool,
        extra: Iterable[tuple[str, str]] = (),
    ) -> Answer:
        plain = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        body = plain
        headers = self.common_headers(request_id)
        headers.append(("content-type", "application/json"))
        if step.gzip and accepts_gzip:
            body = gzip_lib.compress(plain)
            headers.append(("content-encoding", "gzip"))
        headers.append(("content-length", str(len(body))))
        headers = merge(headers, [*extra, *step.headers])
        return Answer(step, status=status, headers=headers, body=body, plain=plain)

    def error_answer(
        self, step: Step, request_id: str, kind: str, accepts_gzip: bool = False
    ) -> Answer:
        payload = {
            "type": "error",
            "error": {"type": step.error_type, "message": step.message},
            "request_id": request_id,
        }
        extra: list[tuple[str, str]] = []
        if step.retry_after is not None:
            reset = datetime.fromtimestamp(time.time() + step.retry_after, UTC)
            extra = [
                ("retry-after", str(step.retry_after)),
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", reset.strftime("%Y-%m-%dT%H:%M:%SZ")),
            ]
        answer = self.json_answer(step, step.status, payload, request_id, accepts_gzip, extra)
        answer.step = Step(kind) if kind != step.kind else step
        return answer

    def message(self, step: Step, req: dict[str, Any], body: bytes) -> dict[str, Any]:
        blocks, stop_reason = reply_blocks(step, req, body, self._next_id)
        return {
            "id": self._next_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": req.get("model") or DEFAULT_MODEL,
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": usage(step, body, blocks),
        }

    def stream_answer(
        self, step: Step, req: dict[str, Any], body: bytes, request_id: str
    ) -> Answer:
        message = self.message(step, req, body)
        start_usage = {**message["usage"], "output_tokens": 1}  # provisional in message_start
        events: list[Event] = [
            ("message_start", {"type": "message_start", "message": {
                **message, "content": [], "stop_reason": None, "usage": start_usage}}),
            ("ping", {"type": "ping"}),
        ]
        for index, block in enumerate(message["content"]):
            events += block_events(index, block)
        events += [
            ("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": message["usage"],
            }),
            ("message_stop", {"type": "message_stop"}),
        ]
        if step.kind in ("stream_error", *TRUNCATING):
            events = events[: step.n_events]
        if step.kind == "stream_error":
            events.append(("error", {"type": "error", "error": {
                "type": step.error_type, "message": step.message}}))
        sent_usage: dict[str, int] | None = None  # what the client was told, not what was planned
        for name, data in events:
            if name == "message_start":
                sent_usage = dict(data["message"]["usage"])
            elif name == "message_delta" and sent_usage is not None:
                sent_usage.update(data["usage"])
        headers = self.common_headers(request_id) + [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        return Answer(step, headers=merge(headers, step.headers),
                      events=[sse(name, data) for name, data in events], stream=True,
                      usage=sent_usage)

    def model_list(self, target: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(target).query)
        items = [self.model_object(m) for m in self.models]
        after, before = query.get("after_id", [None])[0], query.get("before_id", [None])[0]
        ids = [m["id"] for m in items]
        if after in ids:
            items = items[ids.index(after) + 1 :]
        elif before in ids:
            items = items[: ids.index(before)]
        try:
            limit = max(1, min(1000, int(query.get("limit", ["20"])[0])))
        except ValueError:
            limit = 20
        page = items[:limit]
        return {
            "data": page,
            "has_more": len(items) > limit,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }

    def model(self, model_id: str) -> dict[str, Any] | None:
        return next((self.model_object(m) for m in self.models if m[0] == model_id), None)

    @staticmethod
    def model_object(model: tuple[str, str, str]) -> dict[str, Any]:
        model_id, name, created = model
        return {"type": "model", "id": model_id, "display_name": name, "created_at": created}


def merge(
    headers: list[tuple[str, str]], extra: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Headers with `extra` replacing same-named ones (case-insensitively)."""
    extra = list(extra)
    names = {k.lower() for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra
