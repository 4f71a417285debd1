"""A whole Anthropic message as an OpenAI `chat.completion`. Pure.

The pieces (finish reason, usage, ids, the opening fields) are shared with the stream
translator, so a streamed answer and the same answer unstreamed always agree.

The envelope and the usage are written as JSON text, not built as objects for the encoder:
the encoder spends about 500 instructions on each piece of its output, key, value or
separator, which made encoding a short answer cost more than translating it. The text is what
`compact` makes of the same object, key order included; a test holds the two side by side.

- text blocks make `content` (None when the answer is only tool calls, as OpenAI sends it);
- thinking blocks make `reasoning_content`, the field most OpenAI-compatible clients read;
  redacted thinking and signatures have no counterpart and are left out;
- tool_use blocks make `tool_calls`, the input serialised as the JSON `arguments` string;
- server-side tool blocks (web search and the like) have no counterpart and are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kestrel.domain import USAGE_FIELDS
from kestrel.jsontext import compact, is_count, value_text

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused the turn; the answer so far is complete
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason; an unknown (future) stop reason reads as a normal stop."""
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def completion_id(message_id: Any) -> str:
    """`chatcmpl-` and Anthropic's message id, so a client's id leads to the upstream's logs."""
    return f"chatcmpl-{message_id}" if isinstance(message_id, str) else "chatcmpl-kestrel"


def read_usage(raw: Any, into: dict[str, int]) -> None:
    """Take the usage counts of `raw` into `into`; absent or null counts keep their value (a
    stream's `message_delta` repeats only what changed, as cumulative totals)."""
    if not isinstance(raw, dict):  # parsed JSON: a dict, and a cheaper check than Mapping's
        return
    for name in USAGE_FIELDS:
        value = raw.get(name)
        if is_count(value):
            into[name] = value


def usage_text(usage: Mapping[str, int]) -> str:
    """OpenAI's usage object as JSON text. Anthropic counts cache reads and writes apart from
    `input_tokens`; OpenAI's `prompt_tokens` is every token of the prompt, with the cached ones
    detailed. The counts are whole numbers (`read_usage` takes no other)."""
    cached = usage.get("cache_read_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + cached + usage.get("cache_creation_input_tokens", 0)
    completion = usage.get("output_tokens", 0)
    return (f'{{"prompt_tokens":{prompt},"completion_tokens":{completion},'
            f'"total_tokens":{prompt + completion},'
            f'"prompt_tokens_details":{{"cached_tokens":{cached}}}}}')


def opening(kind: str, message_id: Any, model: Any, created: int) -> str:
    """The fields a `chat.completion` or a `chat.completion.chunk` (`kind`) opens with, up to
    and including the `choices` key, as JSON text: the same for every chunk of an answer."""
    return (f'{{"id":{value_text(completion_id(message_id))},"object":"{kind}",'
            f'"created":{created},"model":{value_text(model)},"choices":')


def tool_call(block: Mapping[str, Any], arguments: str) -> dict[str, Any]:
    return {"id": block.get("id"), "type": "function",
            "function": {"name": block.get("name"), "arguments": arguments}}


def to_chat_completion(message: Mapping[str, Any], *, created: int) -> str:
    """The chat.completion, as JSON text, for a Messages response body; `created` is epoch
    seconds."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks = message.get("content")
    for block in blocks if isinstance(blocks, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            thoughts.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            calls.append(tool_call(block, json.dumps(block.get("input") or {},
                                                     ensure_ascii=False)))
    reply = ('{"role":"assistant","content":'
             + (value_text("".join(texts)) if texts or not calls else "null"))
    if thoughts:
        reply += ',"reasoning_content":' + value_text("".join(thoughts))
    if calls:
        reply += ',"tool_calls":' + compact(calls)
    usage: dict[str, int] = {}
    read_usage(message.get("usage"), usage)
    return (opening("chat.completion", message.get("id"), message.get("model"), created)
            + '[{"index":0,"message":' + reply + '},"logprobs":null,"finish_reason":"'
            + finish_reason(message.get("stop_reason")) + '"}],"usage":' + usage_text(usage)
            + "}")
