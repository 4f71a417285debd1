"""OpenAI Chat Completions request → Anthropic Messages request: one case per rule."""

from __future__ import annotations

from typing import Any

import pytest

from kestrel.domain import ClientError
from kestrel.translate.openai_request import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MAX_TOKENS_REASONING,
    default_max_tokens,
    model_version,
    to_anthropic,
)

MODEL = "claude-sonnet-4-6"
LEGACY = "claude-sonnet-4-5-20250929"  # thinks with a budget
HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgo="


def translate(aliases: dict[str, str] | None = None, **request: Any) -> dict[str, Any]:
    request.setdefault("model", MODEL)
    request.setdefault("messages", HI)
    return to_anthropic(request, aliases or {}).body


def refused(**request: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        translate(**request)
    assert info.value.status == 400
    return info.value


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def test_the_smallest_request() -> None:
    assert translate() == {"model": MODEL, "max_tokens": DEFAULT_MAX_TOKENS,
                           "messages": [{"role": "user", "content": [text("hi")]}]}


def test_model_passes_through_unless_aliased() -> None:
    aliases = {"gpt-4o": "claude-opus-4-7"}
    assert translate(aliases, model="claude-haiku-4-5")["model"] == "claude-haiku-4-5"
    assert translate(aliases, model="gpt-4o")["model"] == "claude-opus-4-7"
    assert refused(model="").field == "model"


# --- messages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("messages", "system", "turns"), [
    pytest.param(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
         {"role": "developer", "content": [{"type": "text", "text": "use French"}]}],
        [text("be brief"), text("use French")],
        [{"role": "user", "content": [text("hi")]}],
        id="system-and-developer-in-order-wherever-they-stand"),
    pytest.param(
        [{"role": "user", "content": [{"type": "text", "text": "look"},
                                      {"type": "image_url",
                                       "image_url": {"url": f"data:image/png;base64,{PNG}",
                                                     "detail": "high"}}]}],
        [], [{"role": "user", "content": [text("look"), {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": PNG}}]}],
        id="image-data-url-becomes-base64-source"),
    pytest.param(
        [{"role": "user", "content": [{"type": "image_url",
                                       "image_url": {"url": "https://example.com/cat.jpg"}}]}],
        [], [{"role": "user", "content": [{"type": "image", "source": {
            "type": "url", "url": "https://example.com/cat.jpg"}}]}],
        id="image-https-url-becomes-url-source"),
    pytest.param(
        [{"role": "user", "content": [{"type": "image_url",
                                       "image_url": f"data:image/jpg;base64,{PNG}"}]}],
        [], [{"role": "user", "content": [{"type": "image", "source": {
            "type": "base64", "media_type": "image/jpeg", "data": PNG}}]}],
        id="bare-url-string-and-image-jpg-spelling"),
    pytest.param(
        [{"role": "user", "content": "weather?"},
         {"role": "assistant", "content": "Checking.", "tool_calls": [
             {"id": "call_1", "type": "function",
              "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
             {"id": "call.2", "type": "function", "function": {"name": "time", "arguments": ""}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
         {"role": "tool", "tool_call_id": "call.2",
          "content": [{"type": "text", "text": "noon"}]}],
        [], [{"role": "user", "content": [text("weather?")]},
             {"role": "assistant", "content": [
                 text("Checking."),
                 {"type": "tool_use", "id": "call_1", "name": "weather",
                  "input": {"city": "Paris"}},
                 {"type": "tool_use", "id": "call_2", "name": "time", "input": {}}]},
             {"role": "user", "content": [
                 {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                 {"type": "tool_result", "tool_use_id": "call_2", "content": [text("noon")]}]}],
        id="tool-calls-and-consecutive-tool-results-in-one-user-turn"),
    pytest.param(
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
         {"role": "assistant", "content": "c"}, {"role": "assistant", "content": None,
                                                 "tool_calls": []},
         {"role": "assistant", "content": [{"type": "refusal", "refusal": "d"}]},
         {"role": "user", "content": "e"}],
        [], [{"role": "user", "content": [text("a"), text("b")]},
             {"role": "assistant", "content": [text("c"), text("d")]},
             {"role": "user", "content": [text("e")]}],
        id="consecutive-turns-of-one-role-merged-empty-ones-dropped"),
    pytest.param(
        [{"role": "user", "content": "go"},
         {"role": "assistant", "content": None, "tool_calls": [
             {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
         {"role": "user", "content": "and also"},
         {"role": "tool", "tool_call_id": "t1", "content": ""}],
        [], [{"role": "user", "content": [text("go")]},
             {"role": "assistant", "content": [
                 {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"},
                                          text("and also")]}],
        id="tool-results-go-ahead-of-user-text"),
    pytest.param(
        [{"role": "user", "content": "JSON please"},
         {"role": "assistant", "content": "{\n  "}],
        [], [{"role": "user", "content": [text("JSON please")]},
             {"role": "assistant", "content": [text("{")]}],
        id="assistant-last-is-a-prefill-without-trailing-whitespace"),
    pytest.param(
        [{"role": "system", "content": [{"type": "text", "text": "long context",
                                         "cache_control": {"type": "ephemeral"}}]},
         {"role": "user", "content": [{"type": "text", "text": ""},
                                      {"type": "text", "text": "q", "name": "ignored"}],
          "name": "alice"}],
        [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}],
        [{"role": "user", "content": [text("q")]}],
        id="cache-control-kept-empty-text-and-names-dropped"),
])
def test_messages(messages: list[dict[str, Any]], system: list[dict[str, Any]],
                  turns: list[dict[str, Any]]) -> None:
    body = translate(messages=messages)
    assert body.get("system", []) == system
    assert body["messages"] == turns


@pytest.mark.parametrize(("messages", "param"), [
    pytest.param([], "messages", id="empty"),
    pytest.param([{"role": "system", "content": "only"}], "messages", id="only-system"),
    pytest.param([{"role": "function", "content": "x"}], "messages[0].role", id="bad-role"),
    pytest.param([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
                 "messages[0].content[0].type", id="audio-part"),
    pytest.param([{"role": "user", "content": [{"type": "image_url",
                                                "image_url": {"url": "ftp://x/y.png"}}]}],
                 "messages[0].content[0].image_url.url", id="image-scheme"),
    pytest.param([{"role": "user", "content": [
                      {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}],
                 "messages[0].content[0].image_url.url", id="image-type"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [
                      {"id": "t", "type": "function",
                       "function": {"name": "f", "arguments": "{not json"}}]}],
                 "messages[1].tool_calls[0].function.arguments", id="invalid-json-arguments"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [
                      {"id": "t", "type": "function", "function": {"name": "f",
                                                                   "arguments": "[1]"}}]}],
                 "messages[1].tool_calls[0].function.arguments", id="arguments-not-an-object"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [
                      {"id": "t", "type": "function", "function": {"name": "f", "arguments": 1}}]}],
                 "messages[1].tool_calls[0].function.arguments", id="arguments-not-a-string"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [
                      {"id": "t", "type": "function", "function": {"name": "f"}},
                      {"type": "function", "function": {"name": "f"}}]}],
                 "messages[1].tool_calls[1].id", id="tool-call-without-id"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "tool_calls": [
                      {"id": "t", "type": "function", "function": {"arguments": "{}"}}]}],
                 "messages[1].tool_calls[0].function.name", id="tool-call-without-name"),
    pytest.param([{"role": "tool", "content": "x"}], "messages[0].tool_call_id",
                 id="tool-without-id"),
    pytest.param([{"role": "system", "content": [{"type": "image_url", "image_url": "x"}]}],
                 "messages[0].content[0].type", id="image-in-system"),
    pytest.param([{"role": "user", "content": 5}], "messages[0].content", id="content-number"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": "a"}, "b"]}],
                 "messages[0].content", id="part-not-an-object"),
    pytest.param([{"role": "user", "content": [{"type": "text", "text": None}]}],
                 "messages[0].content[0].text", id="text-not-a-string"),
    pytest.param([{"role": "user", "content": "x"},
                  {"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                    {"type": "refusal", "refusal": 7}]}],
                 "messages[1].content[1].refusal", id="refusal-not-a-string"),
])
def test_bad_messages_are_400_naming_the_field(messages: list[Any], param: str) -> None:
    error = refused(messages=messages)
    assert error.field == param
    assert error.message.startswith(param.removesuffix(".type") + ": ")


# --- sampling and limits ------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "expected"), [
    ("claude-3-haiku-20240307", 4096),
    ("claude-3-opus-20240229", 4096),
    ("claude-3-5-haiku-20241022", 8192),
    ("claude-3-7-sonnet-20250219", DEFAULT_MAX_TOKENS),
    ("claude-sonnet-4-20250514", DEFAULT_MAX_TOKENS),
    ("claude-opus-4-7", DEFAULT_MAX_TOKENS),
    ("some-future-model", DEFAULT_MAX_TOKENS),
])
def test_max_tokens_default_per_model_family(model: str, expected: int) -> None:
    assert default_max_tokens(model) == expected
    assert translate(model=model)["max_tokens"] == expected


@pytest.mark.parametrize(("model", "version"), [
    ("claude-sonnet-4-20250514", (4, 0)),
    ("claude-opus-4-1-20250805", (4, 1)),
    ("claude-haiku-4-5", (4, 5)),
    ("claude-opus-4-7", (4, 7)),
    ("claude-3-7-sonnet-latest", (3, 7)),
    ("claude-3-opus-20240229", (3, 0)),
    ("gpt-4o", None),
])
def test_model_version(model: str, version: tuple[int, int] | None) -> None:
    assert model_version(model) == version


def test_max_tokens_and_max_completion_tokens() -> None:
    assert translate(max_tokens=100)["max_tokens"] == 100
    assert translate(max_tokens=100, max_completion_tokens=200)["max_tokens"] == 200
    assert refused(max_tokens=0).field == "max_tokens"
    assert refused(max_completion_tokens="10").field == "max_completion_tokens"


@pytest.mark.parametrize(("fields", "expected"), [
    pytest.param({"temperature": 1.7}, {"temperature": 1.0}, id="temperature-clamped-to-1"),
    pytest.param({"temperature": 0.3}, {"temperature": 0.3}, id="temperature-kept"),
    pytest.param({"top_p": 0.9}, {"top_p": 0.9}, id="top-p-alone"),
    pytest.param({"temperature": 0, "top_p": 0.9}, {"temperature": 0.0},
                 id="temperature-wins-over-top-p"),
    pytest.param({"stop": "END"}, {"stop_sequences": ["END"]}, id="stop-string"),
    pytest.param({"stop": ["a", " ", "b"]}, {"stop_sequences": ["a", "b"]}, id="stop-list"),
    pytest.param({"user": "u-42"}, {"metadata": {"user_id": "u-42"}}, id="user"),
    pytest.param({"seed": 1, "presence_penalty": 0.5, "frequency_penalty": 0.5,
                  "logit_bias": {"50256": -100}, "service_tier": "auto", "store": False,
                  "metadata": {"a": "b"}, "n": 1, "logprobs": False,
                  "response_format": {"type": "text"}, "stream": False}, {},
                 id="harmless-knobs-dropped"),
])
def test_sampling_fields(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = translate(**fields)
    assert {k: v for k, v in body.items() if k not in ("model", "max_tokens", "messages")} \
        == expected


@pytest.mark.parametrize(("fields", "param"), [
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"stop": 3}, "stop"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format"),
    ({"stream": "yes"}, "stream"),
])
def test_unsupported_features_are_400_naming_the_parameter(fields: dict[str, Any],
                                                           param: str) -> None:
    error = refused(**fields)
    assert error.field == param and error.message.startswith(param)


def test_response_format_json_schema_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    body = translate(response_format={"type": "json_schema",
                                      "json_schema": {"name": "x", "strict": True,
                                                      "schema": schema}})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_stream_and_include_usage() -> None:
    plain = to_anthropic({"model": MODEL, "messages": HI, "stream": True}, {})
    assert plain.stream and not plain.include_usage and plain.body["stream"] is True
    usage = to_anthropic({"model": MODEL, "messages": HI, "stream": True,
                          "stream_options": {"include_usage": True}}, {})
    assert usage.include_usage
    unstreamed = to_anthropic({"model": MODEL, "messages": HI,
                               "stream_options": {"include_usage": True}}, {})
    assert not unstreamed.stream and not unstreamed.include_usage
    assert "stream" not in unstreamed.body


# --- tools --------------------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {
    "name": "weather", "description": "Weather in a city", "strict": True,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
NOW = {"type": "function", "function": {"name": "now"}}


def test_tools_become_name_description_input_schema() -> None:
    assert translate(tools=[WEATHER, NOW])["tools"] == [
        {"name": "weather", "description": "Weather in a city", "strict": True,
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert refused(tools=[{"type": "custom", "custom": {"name": "x"}}]).field == "tools[0].type"


@pytest.mark.parametrize(("fields", "expected"), [
    pytest.param({}, None, id="absent-is-auto"),
    pytest.param({"tool_choice": "auto"}, None, id="auto"),
    pytest.param({"tool_choice": "none"}, {"type": "none"}, id="none"),
    pytest.param({"tool_choice": "required"}, {"type": "any"}, id="required-is-any"),
    pytest.param({"tool_choice": {"type": "function", "function": {"name": "weather"}}},
                 {"type": "tool", "name": "weather"}, id="named"),
    pytest.param({"parallel_tool_calls": False},
                 {"type": "auto", "disable_parallel_tool_use": True}, id="no-parallel"),
    pytest.param({"tool_choice": "required", "parallel_tool_calls": False},
                 {"type": "any", "disable_parallel_tool_use": True}, id="required-no-parallel"),
    pytest.param({"tool_choice": "none", "parallel_tool_calls": False}, {"type": "none"},
                 id="none-has-nothing-to-parallelise"),
])
def test_tool_choice(fields: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert translate(tools=[WEATHER], **fields).get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in translate(tool_choice="none", parallel_tool_calls=False)
    assert refused(tool_choice="required").field == "tool_choice"
    assert refused(tools=[WEATHER], tool_choice="sometimes").field == "tool_choice"


# --- reasoning ----------------------------------------------------------------------------------


def test_reasoning_effort_is_adaptive_thinking_on_recent_models() -> None:
    body = translate(model="claude-opus-4-7", reasoning_effort="high", temperature=0.2,
                     top_p=0.5)
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": "high"}
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS_REASONING
    assert "temperature" not in body and "top_p" not in body  # thinking fixes them
    assert translate(reasoning_effort="minimal")["output_config"] == {"effort": "low"}


@pytest.mark.parametrize(("effort", "max_tokens", "budget", "sent_max"), [
    ("minimal", None, 1024, DEFAULT_MAX_TOKENS_REASONING),
    ("low", None, 2048, DEFAULT_MAX_TOKENS_REASONING),
    ("medium", None, 8192, DEFAULT_MAX_TOKENS_REASONING),
    ("high", None, 16384, DEFAULT_MAX_TOKENS_REASONING),
    ("high", 10000, 5000, 10000),  # at most half of the client's max_tokens
    ("low", 1500, 1024, 1500),  # never below Anthropic's minimum
])
def test_reasoning_effort_is_a_thinking_budget_on_older_models(
        effort: str, max_tokens: int | None, budget: int, sent_max: int) -> None:
    body = translate(model=LEGACY, reasoning_effort=effort, max_tokens=max_tokens)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["max_tokens"] == sent_max
    assert "output_config" not in body


def test_reasoning_effort_edges() -> None:
    assert translate(reasoning_effort="none", temperature=0.5) == {
        "model": MODEL, "max_tokens": DEFAULT_MAX_TOKENS, "temperature": 0.5,
        "thinking": {"type": "disabled"}, "messages": [{"role": "user", "content": [text("hi")]}]}
    assert refused(reasoning_effort="extreme").field == "reasoning_effort"
    assert refused(reasoning_effort="high", temperature=3).field == "temperature"
    assert refused(model=LEGACY, reasoning_effort="low", max_tokens=1024).field == "max_tokens"
    assert refused(tools=[WEATHER], tool_choice="required",
                   reasoning_effort="low").field == "reasoning_effort"


def test_no_thinking_while_a_tool_loop_continues() -> None:
    # Anthropic needs the turn's signed thinking blocks back to continue it with thinking on;
    # OpenAI clients cannot send them, so this request goes without.
    messages = [{"role": "user", "content": "go"},
                {"role": "assistant", "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "now",
                                                                  "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "t1", "content": "noon"}]
    body = translate(messages=messages, tools=[NOW], reasoning_effort="high", temperature=0.4)
    assert "thinking" not in body
    assert body["temperature"] == 0.4 and body["max_tokens"] == DEFAULT_MAX_TOKENS
