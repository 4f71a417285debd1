"""`/v1/chat/completions` through a real Kestrel and the fake Anthropic, with the official
`openai` SDK: what the SDK gets back, what went upstream, and which exception each error raises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from fake_upstream import (
    DEFAULT_TEXT,
    THINKING_TEXT,
    TOOL_PREAMBLE,
    cut_stream_after,
    error,
    rate_limited,
    stream_error_after,
    success,
)
from support.stack import MODEL, Stack, account_key, running_stack

OPUS = "claude-opus-4-7"
MAX_BODY_BYTES = 200_000
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
TOOLS: list[Any] = [
    {"type": "function", "function": {
        "name": "weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "clock", "parameters": {"type": "object", "properties": {
            "zone": {"type": "string"}, "offset": {"type": "integer"}}}}},
]
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"MAX_BODY_BYTES": str(MAX_BODY_BYTES), "MODEL_ALIASES": f"gpt-4o={MODEL}"}
    with running_stack(tmp_path_factory.mktemp("openai"), accounts=("a",), env=env) as stack:
        yield stack


@pytest.fixture(autouse=True)
def healthy_account(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests that break a stream leave the shared account cooling down: clear it after each."""
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        with stack.admin() as admin:
            assert admin.post(f"/admin/accounts/{stack.accounts['a']}/reset").status_code == 200


def sdk(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return stack.closed_with_stack(
        openai.OpenAI(base_url=stack.url + "/v1", api_key=key or stack.key, max_retries=0))


def upstream_body(stack: Stack) -> dict[str, Any]:
    body: dict[str, Any] = stack.up.requests[-1].json()
    return body


def log_row(stack: Stack, request_id: str) -> dict[str, Any]:
    """The request log of one request (sent with `x-request-id`), once it is written."""
    deadline = time.monotonic() + 5
    while True:
        rows = [r for r in stack.logs(expect=0) if r["request_id"] == request_id]
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)


def test_plain_completion(stack: Stack) -> None:
    with sdk(stack) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", max_tokens=50, temperature=1.5, stop="END", user="u-1",
            extra_headers={"x-request-id": "oa-plain"},
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "hi"}])
    completion = raw.parse()
    # Ours alone, for the body we wrote; the upstream's fields a client reads come along.
    assert raw.headers.get_list("content-type") == ["application/json"]
    assert raw.headers["request-id"].startswith("req_")
    assert completion.id.startswith("chatcmpl-msg_fake")
    assert completion.object == "chat.completion" and completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == DEFAULT_TEXT
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None

    seen = stack.up.requests[-1]
    assert seen.path == "/v1/messages" and seen.credential == account_key("a")
    assert seen.header("anthropic-version") == "2023-06-01"
    assert seen.header("content-type") == "application/json"
    assert stack.key not in json.dumps(seen.headers)
    assert seen.json() == {
        "model": MODEL, "max_tokens": 50, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stop_sequences": ["END"], "metadata": {"user_id": "u-1"}, "temperature": 1.0}
    assert seen.usage is not None and completion.usage is not None
    assert completion.usage.prompt_tokens == seen.usage["input_tokens"]
    assert completion.usage.completion_tokens == seen.usage["output_tokens"]

    row = log_row(stack, "oa-plain")
    assert (row["route"], row["status"], row["model"], row["stream"]) == (
        "/v1/chat/completions", 200, MODEL, False)
    assert row["input_tokens"] == seen.usage["input_tokens"]


def test_streaming_text_with_include_usage(stack: Stack) -> None:
    usage = {"cache_read_input_tokens": 40, "cache_creation_input_tokens": 2}
    stack.up.script(account_key("a"), [success(chunk_size=5, usage=usage)])
    with sdk(stack) as client:
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True},
            extra_headers={"x-request-id": "oa-stream"}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == DEFAULT_TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    seen = stack.up.requests[-1].usage
    assert last.choices == [] and last.usage is not None and seen is not None
    assert last.usage.prompt_tokens == seen["input_tokens"] + 42
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 40
    assert last.usage.completion_tokens == seen["output_tokens"]
    assert upstream_body(stack)["stream"] is True
    # Read from the raw upstream stream on the side, once: the log has the upstream's counts.
    row = log_row(stack, "oa-stream")
    assert (row["route"], row["status"], row["error_type"], row["stream"]) == (
        "/v1/chat/completions", 200, None, True)
    assert (row["input_tokens"], row["cache_read_tokens"]) == (seen["input_tokens"], 40)


def test_streaming_parallel_tool_calls_reassemble_into_json(stack: Stack) -> None:
    stack.up.script(account_key("a"), [success(chunk_size=7)])
    with sdk(stack) as client, client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": "please use all tools"}],
            tools=TOOLS) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == TOOL_PREAMBLE
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls if c.type == "function"] == ["weather", "clock"]
    assert [json.loads(c.function.arguments) for c in calls if c.type == "function"] == [
        {"city": "fake city"}, {"zone": "fake zone", "offset": 42}]
    assert all(c.id.startswith("toolu_fake") for c in calls)


def test_tool_round_trip(stack: Stack) -> None:
    messages: list[Any] = [{"role": "user", "content": "use tool: weather in Paris?"}]
    with sdk(stack) as client:
        first = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS,
                                               parallel_tool_calls=False)
        assert upstream_body(stack)["tool_choice"] == {"type": "auto",
                                                       "disable_parallel_tool_use": True}
        reply = first.choices[0].message
        (call,) = reply.tool_calls or []
        assert call.type == "function"
        messages += [reply.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "18°C, sunny"}]
        second = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == DEFAULT_TEXT
    assert upstream_body(stack)["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": TOOL_PREAMBLE},
            {"type": "tool_use", "id": call.id, "name": "weather",
             "input": json.loads(call.function.arguments)}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "18°C, sunny"}]}]


def test_images_go_upstream_as_base64_and_url_sources(stack: Stack) -> None:
    with sdk(stack) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg",
                                                "detail": "low"}}]}])
    assert upstream_body(stack)["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}]


@pytest.mark.parametrize(("model", "thinking"), [
    (OPUS, {"type": "adaptive", "display": "summarized"}),
    ("claude-sonnet-4-5", {"type": "enabled", "budget_tokens": 8192}),
])
def test_reasoning_effort_thinks_and_returns_reasoning_content(
        stack: Stack, model: str, thinking: dict[str, Any]) -> None:
    with sdk(stack) as client:
        completion = client.chat.completions.create(model=model, messages=HI,
                                                    reasoning_effort="medium")
        sent = upstream_body(stack)
        with client.chat.completions.stream(model=model, messages=HI,
                                            reasoning_effort="medium") as stream:
            streamed = stream.get_final_completion()
    assert sent["thinking"] == thinking and sent["max_tokens"] == 32000
    for message in (completion.choices[0].message, streamed.choices[0].message):
        assert (message.model_extra or {}).get("reasoning_content") == THINKING_TEXT
        assert message.content == DEFAULT_TEXT


# --- errors -------------------------------------------------------------------------------------


def error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    result: dict[str, Any] = body["error"]
    return result


def test_a_bad_key_is_an_authentication_error(stack: Stack) -> None:
    with sdk(stack, key="kst_not-a-key") as client, \
            pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model=MODEL, messages=HI)
    assert info.value.code == "invalid_api_key"
    assert error_body(info.value)["type"] == "authentication_error"


def test_n_above_one_is_refused_naming_the_parameter(stack: Stack) -> None:
    before = len(stack.up.requests)
    with sdk(stack) as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, n=2,
                                       extra_headers={"x-request-id": "oa-n2"})
    assert info.value.param == "n" and error_body(info.value)["type"] == "invalid_request_error"
    assert len(stack.up.requests) == before
    row = log_row(stack, "oa-n2")
    assert (row["route"], row["status"], row["error_type"]) == (
        "/v1/chat/completions", 400, "invalid_request_error")


@pytest.mark.parametrize(("step", "exception", "status"), [
    (error(400, "invalid_request_error", "messages: text content blocks must be non-empty"),
     openai.BadRequestError, 400),
    (error(404, "not_found_error", "model: gpt-5"), openai.NotFoundError, 404),
    (error(413, "request_too_large", "Request exceeds the maximum size"),
     openai.APIStatusError, 413),
])
def test_upstream_client_errors_keep_their_status_in_openai_shape(
        stack: Stack, step: Any, exception: type[openai.APIStatusError], status: int) -> None:
    stack.up.script(account_key("a"), [step])
    with sdk(stack) as client, pytest.raises(exception) as info:
        client.chat.completions.create(model=MODEL, messages=HI)
    assert info.value.status_code == status
    assert error_body(info.value)["message"] == step.message


def test_a_body_over_the_limit_is_413(stack: Stack) -> None:
    with sdk(stack) as client, pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=[
            {"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}])
    assert info.value.status_code == 413
    assert error_body(info.value) | {"message": ""} == {
        "message": "", "type": "invalid_request_error", "param": None,
        "code": "request_too_large"}


def test_an_error_mid_stream_raises_in_the_sdk(stack: Stack) -> None:
    stack.up.script(account_key("a"), [stream_error_after(5, "overloaded_error")])
    received = ""
    with sdk(stack) as client, pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model=MODEL, messages=HI, stream=True):
            received += chunk.choices[0].delta.content or ""
    assert received  # the text before the error reached the client
    assert info.value.message == "Overloaded" and info.value.type == "server_error"


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event(stack: Stack) -> None:
    stack.up.script(account_key("a"), [cut_stream_after(4)])
    with sdk(stack) as client, pytest.raises(openai.APIError) as info:
        list(client.chat.completions.create(model=MODEL, messages=HI, stream=True,
                                            extra_headers={"x-request-id": "oa-cut"}))
    assert "broke off" in info.value.message
    assert log_row(stack, "oa-cut")["error_type"] in ("upstream_disconnected",
                                                      "stream_incomplete")


def test_a_client_leaving_mid_stream_closes_the_upstream_stream(stack: Stack) -> None:
    stack.up.script(account_key("a"), [success(event_interval=0.2, text="word " * 40)])
    leaving = stack.up.disconnects
    with stack.http(headers={"x-request-id": "oa-gone"}) as client, client.stream(
            "POST", "/v1/chat/completions",
            json={"model": MODEL, "messages": HI, "stream": True}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        next(response.iter_raw())
    assert stack.up.wait_for_disconnects(leaving + 1, timeout=3)
    row = log_row(stack, "oa-gone")
    assert (row["status"], row["error_type"]) == (499, "client_disconnected")


def test_every_account_cooling_is_a_rate_limit_error_with_retry_after(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=("a",)) as stack:
        stack.up.script(account_key("a"), [rate_limited(retry_after=30)])
        with sdk(stack) as client, pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=HI)
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 30
    assert info.value.code == "rate_limit_exceeded"


def test_no_account_is_an_internal_server_error(tmp_path: Path) -> None:
    with running_stack(tmp_path, accounts=()) as stack, sdk(stack) as client, \
            pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=HI, stream=True)
    assert info.value.status_code == 503
    assert error_body(info.value)["type"] == "server_error"
