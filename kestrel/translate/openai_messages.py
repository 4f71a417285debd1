"""OpenAI chat messages as Anthropic's `system` blocks and alternating turns. Pure.

- `system` and `developer` messages, wherever they stand, become the top-level `system`, in order;
- user content is a string or parts: `text`, and `image_url` with a base64 `data:` URL (a base64
  image source) or an http(s) URL (a URL image source); other parts (audio, files) are refused;
- an assistant message's text (and `refusal` parts) and `tool_calls` become text and `tool_use`
  blocks, the arguments parsed from their JSON string (a JSON object, or a 400);
- `tool` messages become `tool_result` blocks in a user turn;
- consecutive turns of one role are merged (Anthropic wants them alternating), and a user turn
  carries its tool results ahead of its text, as Anthropic requires;
- an assistant message last is a prefill: its trailing whitespace is cut, which Anthropic refuses;
- empty text parts are left out (Anthropic refuses empty text blocks), and so is a message left
  with nothing; `name` and an assistant's `reasoning_content` have no counterpart and are ignored
  (thinking can only be sent back with Anthropic's signature, which OpenAI clients never keep);
- `cache_control` on a text or image part is kept, the convention OpenRouter and Cline use to
  ask for Anthropic prompt caching.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kestrel.domain import ClientError

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"data:([^;,]+);base64,(.*)", re.DOTALL)
_TOOL_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def to_turns(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, Anthropic turns) from OpenAI's message list."""
    if not isinstance(messages, list) or not messages:
        raise ClientError("messages: must be a non-empty list", field="messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    # Each helper is given the message's index and names the place of a problem from it
    # (`messages[3].content[0].text`) only once it finds one: a conversation sends every
    # message again with each request. (An image part, rare, is located as it is read.)
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            system += _text_blocks(message.get("content"), i)
        elif role == "user":
            _append(turns, "user", _user_blocks(message.get("content"), i))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, i))
        elif role == "tool":
            _append(turns, "user", [_tool_result(message, i)])
        else:
            raise ClientError(f"messages[{i}].role: must be system, developer, user, "
                              "assistant or tool", field=f"messages[{i}].role")
    if not turns:
        raise ClientError("messages: needs a user or assistant message", field="messages")
    for turn in turns:
        # Anthropic wants tool results ahead of any text; one block is in order already.
        if turn["role"] == "user" and len(turn["content"]) > 1:
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    _trim_prefill(turns)
    return system, turns


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return  # Anthropic refuses empty turns; an empty message says nothing anyway
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _trim_prefill(turns: list[dict[str, Any]]) -> None:
    last = turns[-1]
    if last["role"] != "assistant" or last["content"][-1]["type"] != "text":
        return
    block = last["content"][-1]
    block["text"] = block["text"].rstrip()
    if not block["text"]:
        last["content"].pop()
        if not last["content"]:
            turns.pop()


def _parts(content: Any, index: int) -> list[dict[str, Any]]:
    """The parts of message `index`'s content when it is not a string (`_string_blocks`)."""
    if content is None:
        return []
    if isinstance(content, list):
        for part in content:  # a loop: all() over a generator cost more than the parts
            if not isinstance(part, dict):
                break
        else:
            return content
    where = f"messages[{index}].content"
    raise ClientError(f"{where}: must be a string or a list of parts", field=where)


def _text_block(part: dict[str, Any], key: str, index: int, j: int) -> list[dict[str, Any]]:
    """Part `j` of message `index`: the text under `key` as a text block, none if empty."""
    value = part.get(key)
    if not isinstance(value, str):
        raise not_a_string(f"{_part_place(index, j)}.{key}")
    if not value:
        return []  # Anthropic refuses empty text blocks
    block: dict[str, Any] = {"type": "text", "text": value}
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return [block]


def _string_blocks(content: str) -> list[dict[str, Any]]:
    """Content given as a string, as most messages are: one text block, or none for "" (which
    Anthropic refuses). Taken before any part is looked at: a conversation repeats this for
    each of its messages."""
    return [{"type": "text", "text": content}] if content else []


def _text_blocks(content: Any, index: int, *, refusal: bool = False) -> list[dict[str, Any]]:
    """The text of message `index`'s content (refusal parts too, for an assistant's)."""
    if isinstance(content, str):
        return _string_blocks(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(_parts(content, index)):
        kind = part.get("type")
        if kind == "text" or (refusal and kind == "refusal"):
            blocks += _text_block(part, kind, index, j)  # the text is under the type's name
        else:
            where = _part_place(index, j)
            raise ClientError(f"{where}: only text parts are allowed here",
                              field=f"{where}.type")
    return blocks


def _user_blocks(content: Any, index: int) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return _string_blocks(content)
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(_parts(content, index)):
        kind = part.get("type")
        if kind == "text":
            blocks += _text_block(part, "text", index, j)
        elif kind == "image_url":
            blocks.append(_image(part, f"{_part_place(index, j)}.image_url"))
        else:
            where = _part_place(index, j)
            raise ClientError(f"{where}: parts of type {kind!r} are not supported (text "
                              "and image_url are)", field=f"{where}.type")
    return blocks


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec  # some clients send the bare URL
    url = expect_string(url, f"{where}.url")
    if (data := _DATA_URL.fullmatch(url)) is not None:
        media_type = data.group(1).strip().lower().replace("image/jpg", "image/jpeg")
        if media_type not in _IMAGE_TYPES:
            raise ClientError(f"{where}.url: images must be JPEG, PNG, GIF or WebP, not "
                              f"{media_type}", field=f"{where}.url")
        source = {"type": "base64", "media_type": media_type, "data": data.group(2)}
    elif url.lower().startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise ClientError(f"{where}.url: must be an http(s) URL or a base64 data: URL",
                          field=f"{where}.url")
    block: dict[str, Any] = {"type": "image", "source": source}
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _assistant_blocks(message: dict[str, Any], index: int) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"), index, refusal=True)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ClientError(f"messages[{index}].tool_calls: must be a list",
                          field=f"messages[{index}].tool_calls")
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            at = _call_place(index, j)
            raise ClientError(f"{at}: must have a function", field=f"{at}.function")
        raw = function.get("arguments") or "{}"
        if not isinstance(raw, str):
            raise not_a_string(f"{_call_place(index, j)}.function.arguments")
        try:
            arguments = json.loads(raw)
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            at = f"{_call_place(index, j)}.function.arguments"
            raise ClientError(f"{at}: must be a JSON object", field=at)
        call_id = call.get("id")
        if not isinstance(call_id, str):
            raise not_a_string(f"{_call_place(index, j)}.id")
        name = function.get("name")
        if not isinstance(name, str):
            raise not_a_string(f"{_call_place(index, j)}.function.name")
        blocks.append({"type": "tool_use", "id": _tool_id(call_id), "name": name,
                       "input": arguments})
    return blocks


def _part_place(index: int, j: int) -> str:
    """Where content part `j` of message `index` is, for a 400 about it."""
    return f"messages[{index}].content[{j}]"


def _call_place(index: int, j: int) -> str:
    """Where tool call `j` of message `index` is, for a 400 about it."""
    return f"messages[{index}].tool_calls[{j}]"


def _tool_result(message: dict[str, Any], index: int) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise not_a_string(f"messages[{index}].tool_call_id")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif blocks := _text_blocks(content, index):
        result["content"] = blocks
    return result


def _tool_id(value: str) -> str:
    # Anthropic accepts only [A-Za-z0-9_-] in tool ids; other providers' ids may hold more.
    return _TOOL_ID_UNSAFE.sub("_", value)


def expect_string(value: Any, where: str) -> str:
    """`value` if it is a string, else a 400 naming the field."""
    if not isinstance(value, str):
        raise not_a_string(where)
    return value


def not_a_string(where: str) -> ClientError:
    """The 400 for a field `where` that must be a string and is not."""
    return ClientError(f"{where}: must be a string", field=where)
