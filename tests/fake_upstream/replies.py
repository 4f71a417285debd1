"""The canned replies: deterministic functions of the request, so tests can predict them.

`input_tokens = len(body) // 10` (at least 1), `output_tokens = generated characters // 4` (at
least 1); a `thinking` block when the request enables thinking; a `tool_use` block (input
streamed as `input_json_delta` pieces) when the request has `tools` and the last user text
contains "use tool" (one `tool_use` block per tool, in parallel, when it contains "use all
tools"), or the one `tool_use` block a `tool_call()` step scripts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from .steps import Step

DEFAULT_MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-7", "Claude Opus 4.7", "2026-04-16T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)
DEFAULT_MODEL = "claude-sonnet-4-6"

DEFAULT_TEXT = "Hello from the fake Anthropic upstream. Ünïcödé survives chunking: ✓."
TOOL_PREAMBLE = "I'll use the tool for that."
THINKING_TEXT = "The user wants a reply. Let me think about it step by step."

Event = tuple[str, dict[str, Any]]


def sse(name: str, data: dict[str, Any]) -> bytes:
    if name == "ping":
        return b'event: ping\ndata: {"type": "ping"}\n\n'  # spaced, as Anthropic sends it
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {text}\n\n".encode()


def input_tokens(body: bytes) -> int:
    return max(1, len(body) // 10)


def usage(step: Step, body: bytes, blocks: list[dict[str, Any]]) -> dict[str, int]:
    generated = 0
    for block in blocks:
        if block["type"] == "text":
            generated += len(block["text"])
        elif block["type"] == "thinking":
            generated += len(block["thinking"])
        elif block["type"] == "tool_use":
            generated += len(json.dumps(block["input"]))
    counts = {
        "input_tokens": input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": max(1, generated // 4),
    }
    counts.update(dict(step.usage))
    return counts


def last_user_text(req: dict[str, Any]) -> str:
    messages = req.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                b.get("text", "")
                for b in content
                if isinstance(b, dict) and b.get("type") == "text"
            )
        return ""
    return ""


def fake_input(schema: object) -> dict[str, Any]:
    """A deterministic input that fits a tool's JSON schema well enough for tests."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or not props:
        return {"query": "kestrel"}
    values: dict[str, Any] = {}
    for name, spec in props.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
            values[name] = spec["enum"][0]
        elif kind == "integer":
            values[name] = 42
        elif kind == "number":
            values[name] = 4.5
        elif kind == "boolean":
            values[name] = True
        elif kind == "array":
            values[name] = ["a", "b"]
        elif kind == "object":
            values[name] = {}
        else:
            values[name] = f"fake {name}"
    return values


def reply_blocks(
    step: Step, req: dict[str, Any], body: bytes, next_id: Callable[[str], str]
) -> tuple[list[dict[str, Any]], str]:
    blocks: list[dict[str, Any]] = []
    thinking = req.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        signature = base64.b64encode(hashlib.sha256(body).digest() * 3).decode()
        blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": signature})
    if step.tool is not None:  # scripted: this tool call, whatever the request offers
        name, raw_input = step.tool
        text = step.text if step.text is not None else TOOL_PREAMBLE
        if text:  # Anthropic refuses an empty text block when the client sends it back
            blocks.append({"type": "text", "text": text})
        blocks.append({"type": "tool_use", "id": next_id("toolu_fake"), "name": name,
                       "input": json.loads(raw_input)})
        return blocks, "tool_use"
    tools = req.get("tools")
    named = [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)] \
        if isinstance(tools, list) else []
    asked = last_user_text(req).lower()
    chosen = named if "use all tools" in asked else named[:1] if "use tool" in asked else []
    text = step.text if step.text is not None else (TOOL_PREAMBLE if chosen else DEFAULT_TEXT)
    blocks.append({"type": "text", "text": text})
    for tool in chosen:
        blocks.append(
            {
                "type": "tool_use",
                "id": next_id("toolu_fake"),
                "name": tool["name"],
                "input": fake_input(tool.get("input_schema")),
            }
        )
    return blocks, "tool_use" if chosen else "end_turn"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def block_events(index: int, block: dict[str, Any]) -> list[Event]:
    def delta(d: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})

    kind = block["type"]
    events: list[Event] = []
    start: dict[str, Any]
    if kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in re.findall(r"\s*\S+\s*", block["thinking"]) or [block["thinking"]]:
            events.append(delta({"type": "thinking_delta", "thinking": piece}))
        events.append(delta({"type": "signature_delta", "signature": block["signature"]}))
    elif kind == "text":
        start = {"type": "text", "text": ""}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for piece in re.findall(r"\s*\S+\s*", block["text"]) or [block["text"]]:
            events.append(delta({"type": "text_delta", "text": piece}))
    else:  # tool_use: input arrives as partial JSON strings, the first one empty
        start = {**block, "input": {}}
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        raw = json.dumps(block["input"], ensure_ascii=False)
        for piece in ["", *_pieces(raw, 7)]:
            events.append(delta({"type": "input_json_delta", "partial_json": piece}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events
