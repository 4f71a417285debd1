"""Anthropic message → OpenAI chat.completion, and OpenAI's error object: one case per rule."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.jsontext import compact
from kestrel.translate.openai_errors import error_object, stream_error_object
from kestrel.translate.openai_response import to_chat_completion

MODEL = "claude-sonnet-4-6"


def message(*content: dict[str, Any], stop_reason: str | None = "end_turn",
            **usage: int) -> dict[str, Any]:
    return {"id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
            "content": list(content), "stop_reason": stop_reason, "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 5, **usage}}


def completion(message: dict[str, Any], created: int = 1) -> Any:
    return json.loads(to_chat_completion(message, created=created))


def test_text_answer() -> None:
    assert completion(message({"type": "text", "text": "Hello"}), created=1700) == {
        "id": "chatcmpl-msg_01", "object": "chat.completion", "created": 1700, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    }


def test_thinking_text_and_tools() -> None:
    translated = completion(message(
        {"type": "thinking", "thinking": "Let me see.", "signature": "sig"},
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Two calls: "},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Zürich"}},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        {"type": "text", "text": "done."},
        {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
        stop_reason="tool_use"))
    choice = translated["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant", "content": "Two calls: done.", "reasoning_content": "Let me see.",
        "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "weather", "arguments": '{"city": "Zürich"}'}},
            {"id": "toolu_2", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ]}


def test_only_tool_calls_means_no_content() -> None:
    translated = completion(message(
        {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
        stop_reason="tool_use"))
    assert translated["choices"][0]["message"]["content"] is None
    assert completion(message(), created=1)["choices"][0]["message"]["content"] == ""


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("max_tokens", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
    ("pause_turn", "stop"),
    ("model_context_window_exceeded", "length"),
    ("something_new", "stop"),
    (None, "stop"),
])
def test_finish_reason(stop_reason: str | None, finish_reason: str) -> None:
    translated = completion(message(stop_reason=stop_reason))
    assert translated["choices"][0]["finish_reason"] == finish_reason


def test_prompt_tokens_count_cache_reads_and_writes() -> None:
    translated = completion(message(cache_read_input_tokens=1000,
                                    cache_creation_input_tokens=200))
    assert translated["usage"] == {"prompt_tokens": 1210, "completion_tokens": 5,
                                   "total_tokens": 1215,
                                   "prompt_tokens_details": {"cached_tokens": 1000}}


_TEXT = st.text(max_size=20)  # every code point, the ones JSON must escape among them


@given(text=_TEXT, thought=_TEXT, model=st.one_of(_TEXT, st.none(), st.integers()),
       message_id=st.one_of(_TEXT, st.none()), tool_name=_TEXT,
       stop_reason=st.one_of(st.sampled_from([None, "end_turn", "tool_use"]), _TEXT),
       input_tokens=st.integers(0, 10**9), created=st.integers(0, 2**40))
def test_the_text_is_what_the_encoder_writes(text: str, thought: str, model: Any,
                                             message_id: Any, tool_name: str,
                                             stop_reason: str | None, input_tokens: int,
                                             created: int) -> None:
    """The completion is written as text around its values: it must be the JSON text the
    encoder makes of the same object, every value escaped as the encoder escapes it."""
    answer = {**message({"type": "thinking", "thinking": thought, "signature": "s"},
                        {"type": "text", "text": text},
                        {"type": "tool_use", "id": "toolu_1", "name": tool_name,
                         "input": {"q": text}},
                        stop_reason=stop_reason, input_tokens=input_tokens),
              "model": model, "id": message_id}
    written = to_chat_completion(answer, created=created)
    assert written == compact(json.loads(written))
    assert json.loads(written)["model"] == model
    assert json.loads(written)["choices"][0]["message"]["content"] == text


@pytest.mark.parametrize(("status", "kind", "param", "expected_type", "code"), [
    (400, "invalid_request_error", "n", "invalid_request_error", None),
    (401, "authentication_error", None, "authentication_error", "invalid_api_key"),
    (403, "permission_error", None, "permission_error", None),
    (404, "not_found_error", None, "not_found_error", None),
    (413, "request_too_large", None, "invalid_request_error", "request_too_large"),
    (422, "invalid_request_error", None, "invalid_request_error", None),
    (429, "rate_limit_error", None, "rate_limit_error", "rate_limit_exceeded"),
    (500, "api_error", None, "server_error", None),
    (503, "api_error", None, "server_error", None),
    (529, "overloaded_error", None, "server_error", "overloaded_error"),
])
def test_error_object(status: int, kind: str, param: str | None, expected_type: str,
                      code: str | None) -> None:
    assert error_object(status, kind, "what went wrong", param) == {"error": {
        "message": "what went wrong", "type": expected_type, "param": param, "code": code}}


def test_stream_errors_take_the_status_of_their_type() -> None:
    assert stream_error_object("overloaded_error", "Overloaded")["error"] == {
        "message": "Overloaded", "type": "server_error", "param": None,
        "code": "overloaded_error"}
    assert stream_error_object("rate_limit_error", None)["error"]["type"] == "rate_limit_error"
    assert stream_error_object(None, None)["error"]["type"] == "server_error"
