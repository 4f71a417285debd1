"""The fake Anthropic upstream is faithful: the official SDK accepts everything it sends.

The proxy's tests lean on this fake, so here it is checked against the real client library
(and against raw httpx for the transport failures the SDK would hide behind retries).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, ToolParam

from kestrel.proxy.usage import StreamUsageTracker, summarize_message
from kestrel.translate.sse import SseDecoder

from fake_upstream import (
    ANY,
    INVALID_JSON,
    FakeAnthropic,
    cut_stream_after,
    delay,
    end_stream_after,
    error,
    garbage,
    hang,
    invalid_json,
    only_streams,
    overloaded,
    rate_limited,
    reset_after_headers,
    reset_before_headers,
    reset_mid_stream,
    stall_stream_after,
    stream_error_after,
    success,
)

MODEL = "claude-sonnet-4-6"
KEY = "sk-ant-api03-test-key-a"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}


@pytest.fixture
def up() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server
    assert server.errors == []


@pytest.fixture
def client(up: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=up.base_url, api_key=KEY, max_retries=0) as sdk:
        yield sdk


def raw_stream(up: FakeAnthropic, payload: dict[str, object], key: str = KEY) -> bytes:
    with httpx.Client() as http:
        response = http.post(f"{up.base_url}/v1/messages", headers={"x-api-key": key}, json=payload)
        return response.content


# --- the SDK's view ---------------------------------------------------------------------------


def test_create_plain_message(up: FakeAnthropic, client: anthropic.Anthropic) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=256, messages=HELLO)
    message = raw.parse()
    assert message.type == "message"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert "fake Anthropic upstream" in message.content[0].text
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "49"

    (seen,) = up.requests
    assert (seen.method, seen.path, seen.credential, seen.step) == ("POST", "/v1/messages", KEY,
                                                                    "success")  # fmt: skip
    # whatever version the SDK speaks (newer SDKs send newer dates), it reached the upstream
    assert seen.header("anthropic-version") == client.default_headers["anthropic-version"]
    assert seen.json()["messages"] == HELLO
    # usage is a function of the exact bytes received, so logs can be checked against it
    assert message.usage.input_tokens == len(seen.body) // 10
    assert seen.usage is not None
    assert seen.usage["output_tokens"] == message.usage.output_tokens
    assert seen.request_id == raw.headers["request-id"]


def test_stream_helper_text_thinking_and_tool_use(
    up: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Please use tool for Paris"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "I'll use the tool for that."
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    thinking, _, tool = final.content
    assert thinking.type == "thinking" and tool.type == "tool_use"
    assert thinking.thinking.startswith("The user wants a reply.")
    assert len(thinking.signature) > 40
    assert tool.name == "get_weather"
    assert tool.input == {"city": "fake city", "days": 42, "unit": "celsius"}
    assert final.stop_reason == "tool_use"
    recorded = up.requests[-1].usage
    assert recorded is not None and final.usage.output_tokens == recorded["output_tokens"]


def test_raw_stream_follows_the_documented_event_order(up: FakeAnthropic) -> None:
    wire = raw_stream(
        up,
        {
            "model": MODEL,
            "max_tokens": 100,
            "stream": True,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [WEATHER_TOOL],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "use tool"}]}],
        },
    )
    events = SseDecoder().feed(wire)
    names = [e.event for e in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    for event in events:  # the SSE name always matches the JSON type
        assert json.loads(event.data)["type"] == event.event
    deltas = [
        json.loads(e.data)["delta"]["type"] for e in events if e.event == "content_block_delta"
    ]
    assert deltas[0] == "thinking_delta"
    assert "signature_delta" in deltas and "text_delta" in deltas
    pieces = [
        json.loads(e.data)["delta"]["partial_json"]
        for e in events
        if e.event == "content_block_delta" and '"input_json_delta"' in e.data
    ]
    assert len(pieces) > 2 and pieces[0] == ""
    assert json.loads("".join(pieces))["city"] == "fake city"
    # blocks open and close in order, one at a time
    opened = [json.loads(e.data)["index"] for e in events if e.event == "content_block_start"]
    closed = [json.loads(e.data)["index"] for e in events if e.event == "content_block_stop"]
    assert opened == closed == [0, 1, 2]


def test_no_tool_use_without_tools_or_without_the_phrase(client: anthropic.Anthropic) -> None:
    plain = client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "use tool"}]
    )
    assert [b.type for b in plain.content] == ["text"]
    unasked = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=HELLO,
    )
    assert [b.type for b in unasked.content] == ["text"]


def test_scripted_429_raises_rate_limit_error_with_headers(
    up: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    up.script(KEY, [rate_limited(retry_after=17)])
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "17"
    assert err.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert err.request_id == err.response.headers["request-id"]
    assert err.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": up_message(err)},
        "request_id": err.request_id,
    }
    # the script is used up: the next request succeeds
    client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)


def up_message(err: anthropic.APIStatusError) -> str:
    assert isinstance(err.body, dict)
    message = err.body["error"]["message"]
    assert isinstance(message, str)
    return message


def test_scripted_error_with_custom_headers(up: FakeAnthropic, client: anthropic.Anthropic) -> None:
    up.script(
        KEY,
        [
            error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                headers={"retry-after": "3", "anthropic-ratelimit-unified-reset": "1760000900"},
            ),
            overloaded(),
            error(401, "authentication_error", "invalid x-api-key"),
        ],
    )
    with pytest.raises(anthropic.RateLimitError) as rate:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert rate.value.response.headers["anthropic-ratelimit-unified-reset"] == "1760000900"
    with pytest.raises(anthropic.InternalServerError) as busy:
        client.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert busy.value.status_code == 529
    with pytest.raises(anthropic.AuthenticationError):
        client.models.list()


def test_mid_stream_error_raises(up: FakeAnthropic, client: anthropic.Anthropic) -> None:
    up.script(KEY, [stream_error_after(4, "overloaded_error")])
    received: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream,
    ):
        received.extend(stream.text_stream)  # raises after the first text delta
    assert received == ["Hello "]  # message_start, ping, block start, one delta: then the error
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "overloaded_error"


def test_models_list_and_retrieve(client: anthropic.Anthropic) -> None:
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == ["claude-opus-4-7", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"]
    assert models.first_id == ids[0] and models.last_id == ids[-1] and not models.has_more
    page = client.models.list(limit=1)
    assert [m.id for m in page.data] == ids[:1] and page.has_more
    assert client.models.retrieve("claude-opus-4-7").display_name == "Claude Opus 4.7"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nonexistent")


def test_count_tokens(up: FakeAnthropic, client: anthropic.Anthropic) -> None:
    counted = client.messages.count_tokens(model=MODEL, messages=HELLO)
    assert counted.input_tokens == len(up.requests[-1].body) // 10
    assert up.requests[-1].path == "/v1/messages/count_tokens"


def test_async_client_on_its_own_loop(up: FakeAnthropic) -> None:
    async def main() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(
            base_url=up.base_url, auth_token="sk-ant-oat01-token", max_retries=0
        ) as sdk:
            message = await sdk.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
            async with sdk.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
                final = await stream.get_final_message()
            first, last = message.content[0], final.content[0]
            assert first.type == "text" and last.type == "text"
            return first.text, last.text

    plain, streamed = asyncio.run(main())
    assert plain == streamed
    # a Bearer token is the credential too (OAuth accounts)
    assert [r.credential for r in up.requests] == ["sk-ant-oat01-token"] * 2


# --- scripting --------------------------------------------------------------------------------


def test_scripts_are_per_credential_then_any_then_default(up: FakeAnthropic) -> None:
    up.script("a", [overloaded(), overloaded()])
    up.script(ANY, [error(500, "api_error", "boom")])
    up.set_default("c", error(403, "permission_error", "no"))
    with httpx.Client(base_url=up.base_url) as http:

        def status(key: str) -> int:
            return http.get("/v1/models", headers={"x-api-key": key}).status_code

        assert [status("a"), status("b"), status("b"), status("a"), status("a")] == [
            529, 500, 200, 529, 200,
        ]  # fmt: skip
        assert [status("c"), status("c")] == [403, 403]
    assert [r.credential for r in up.requests_for("b")] == ["b", "b"]
    assert up.pending("a") == 0


def test_valid_credentials_and_missing_credentials(up: FakeAnthropic) -> None:
    up.valid_credentials = {"good"}
    with httpx.Client(base_url=up.base_url) as http:
        bad = http.get("/v1/models", headers={"x-api-key": "bad"})
        none = http.get("/v1/models")
        good = http.get("/v1/models", headers={"authorization": "Bearer good"})
    assert bad.status_code == none.status_code == 401
    assert bad.json()["error"]["type"] == "authentication_error"
    assert good.status_code == 200
    assert [r.step for r in up.requests] == ["auth_error", "auth_error", "success"]


def test_unknown_route_and_bad_json_use_the_error_shape(up: FakeAnthropic) -> None:
    with httpx.Client(base_url=up.base_url, headers={"x-api-key": KEY}) as http:
        missing = http.get("/v1/nothing?x=1")
        broken = http.post("/v1/messages?beta=true", content=b"{not json")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    assert broken.status_code == 400
    assert broken.json()["type"] == "error"
    assert [r.path for r in up.requests] == ["/v1/nothing?x=1", "/v1/messages?beta=true"]
    assert up.requests[1].route == "/v1/messages"
    assert up.requests[1].body == b"{not json"  # byte-exact, even when it is not JSON


def test_body_and_headers_are_recorded_byte_exact(up: FakeAnthropic) -> None:
    body = b'{"model": "m",  "max_tokens": 5, "messages": [], "extra": "\xc3\xa9"}'
    headers = [("x-api-key", KEY), ("anthropic-beta", "a-1"), ("anthropic-beta", "b-2")]
    with httpx.Client() as http:
        http.post(f"{up.base_url}/v1/messages", content=body, headers=headers)
    (seen,) = up.requests
    assert seen.body == body
    assert [v for k, v in seen.headers if k == "anthropic-beta"] == ["a-1", "b-2"]


def test_usage_overrides_and_the_tracker_agree_with_the_record(up: FakeAnthropic) -> None:
    up.script(KEY, [success(usage={"cache_read_input_tokens": 1234}, chunk_size=5)])
    wire = raw_stream(up, {"model": MODEL, "max_tokens": 10, "stream": True, "messages": HELLO})
    tracker = StreamUsageTracker()
    for i in range(0, len(wire), 3):
        tracker.feed(wire[i : i + 3])
    summary = tracker.summary()
    recorded = up.requests[-1].usage
    assert recorded is not None and recorded["cache_read_input_tokens"] == 1234
    assert summary.completed and tracker.garbage == 0
    assert summary.usage.input_tokens == recorded["input_tokens"]
    assert summary.usage.output_tokens == recorded["output_tokens"]
    assert summary.usage.cache_read_input_tokens == 1234


def test_gzip_when_asked_and_accepted(up: FakeAnthropic) -> None:
    up.script(KEY, [success(gzip=True), success(gzip=True), error(529, "overloaded_error", "x",
                                                                 gzip=True)])  # fmt: skip
    payload = {"model": MODEL, "max_tokens": 10, "messages": HELLO}
    with httpx.Client(base_url=up.base_url, headers={"x-api-key": KEY}) as http:
        zipped = http.post("/v1/messages", json=payload, headers={"accept-encoding": "gzip"})
        plain = http.post("/v1/messages", json=payload, headers={"accept-encoding": "identity"})
        failed = http.post("/v1/messages", json=payload, headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert summarize_message(zipped.content).completed  # httpx decoded it
    assert "content-encoding" not in plain.headers
    assert failed.headers["content-encoding"] == "gzip"
    assert summarize_message(failed.content).error_type == "overloaded_error"
    assert up.requests[0].usage == up.requests[1].usage


# --- transport failures -----------------------------------------------------------------------


def post(up: FakeAnthropic, *, stream: bool = False, timeout: float = 5.0) -> httpx.Response:
    payload = {"model": MODEL, "max_tokens": 10, "stream": stream, "messages": HELLO}
    with httpx.Client(timeout=timeout) as http:
        return http.post(f"{up.base_url}/v1/messages", headers={"x-api-key": KEY}, json=payload)


def test_hang_then_client_timeout_counts_a_disconnect(up: FakeAnthropic) -> None:
    up.script(KEY, [hang()])
    with pytest.raises(httpx.ReadTimeout):
        post(up, timeout=0.3)
    assert up.wait_for_disconnects(1, timeout=2.0)
    assert up.requests[-1].step == "hang"


def test_delay_before_answering(up: FakeAnthropic) -> None:
    up.script(KEY, [delay(0.3, error(503, "api_error", "later"))])
    started = time.monotonic()
    response = post(up)
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 503


def test_reset_before_headers(up: FakeAnthropic) -> None:
    up.script(KEY, [reset_before_headers()])
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(up)
    assert up.disconnects == 0  # our own doing, not the client's


def test_garbage_is_a_protocol_error(up: FakeAnthropic) -> None:
    up.script(KEY, [garbage()])
    with pytest.raises(httpx.RemoteProtocolError):
        post(up)


@pytest.mark.parametrize("stream", [True, False])
def test_cut_stream_is_an_incomplete_body(up: FakeAnthropic, stream: bool) -> None:
    up.script(KEY, [cut_stream_after(3)])
    with pytest.raises(httpx.RemoteProtocolError):
        post(up, stream=stream)


def read_until_broken(up: FakeAnthropic, *, stream: bool) -> tuple[int, bytes]:
    """Status and body bytes of one request whose answer is expected to break off."""
    payload = {"model": MODEL, "max_tokens": 10, "stream": stream, "messages": HELLO}
    received = b""
    with (
        httpx.Client() as http,
        http.stream(
            "POST", f"{up.base_url}/v1/messages", headers={"x-api-key": KEY}, json=payload
        ) as response,
    ):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            for chunk in response.iter_raw():
                received += chunk
        return response.status_code, received


def test_reset_after_headers_sends_a_status_and_no_body(up: FakeAnthropic) -> None:
    up.script(KEY, [reset_after_headers()])
    assert read_until_broken(up, stream=True) == (200, b"")
    assert up.requests[-1].step == "reset_after_headers" and up.requests[-1].answer == b""
    assert up.disconnects == 0  # our own doing


@pytest.mark.parametrize("stream", [True, False])
def test_reset_mid_stream_sends_a_prefix_then_a_reset(up: FakeAnthropic, stream: bool) -> None:
    up.script(KEY, [reset_mid_stream(3)])
    status, received = read_until_broken(up, stream=stream)
    record = up.requests[-1]
    assert status == 200 and received == record.answer and received
    if stream:
        assert [e.event for e in SseDecoder().feed(received)] == [
            "message_start", "ping", "content_block_start"]
    else:
        with pytest.raises(ValueError):
            json.loads(received)  # half a message
    assert up.disconnects == 0


def test_end_stream_after_is_complete_http_without_message_stop(up: FakeAnthropic) -> None:
    up.script(KEY, [end_stream_after(4), end_stream_after(4)])
    streamed = raw_stream(up, {"model": MODEL, "max_tokens": 10, "stream": True,
                               "messages": HELLO})  # no error: the HTTP body is whole
    events = SseDecoder().feed(streamed)
    assert [e.event for e in events][-1] == "content_block_delta" and len(events) == 4
    assert streamed == up.requests[-1].answer
    plain = post(up)
    assert plain.status_code == 200 and plain.content == up.requests[-1].answer
    assert int(plain.headers["content-length"]) == len(plain.content)
    assert plain.content.startswith(b'{"id":"msg_fake')
    with pytest.raises(ValueError):
        plain.json()  # a message cut in half, framed as complete


@pytest.mark.parametrize("stream", [True, False])
def test_invalid_json_is_a_whole_200_that_is_not_json(up: FakeAnthropic, stream: bool) -> None:
    up.script(KEY, [invalid_json()])
    response = post(up, stream=stream)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == INVALID_JSON == up.requests[-1].answer
    with pytest.raises(ValueError):
        response.json()


def test_only_streams_spares_the_non_streamed_requests(up: FakeAnthropic) -> None:
    up.set_default(KEY, only_streams(reset_mid_stream(2)))
    plain = post(up)
    assert plain.status_code == 200 and plain.json()["type"] == "message"
    status, received = read_until_broken(up, stream=True)
    assert [r.step for r in up.requests] == ["success", "reset_mid"]
    assert len(SseDecoder().feed(received)) == 2


def test_records_hold_the_answer_each_request_was_sent(up: FakeAnthropic) -> None:
    up.script(KEY, [success(), success(), overloaded(), cut_stream_after(2)])
    answers = [post(up), post(up, stream=True), post(up)]
    for response in answers:
        record = up.request_by_id(response.headers["request-id"])
        assert record is not None
        assert (record.status, record.answer) == (response.status_code, response.content)
    assert [r.streamed for r in up.requests] == [False, True, False]
    status, received = read_until_broken(up, stream=True)
    assert received == up.requests[-1].answer  # the two events sent before the cut
    assert len(SseDecoder().feed(received)) == 2
    assert up.request_by_id("req_unknown") is None


def test_client_leaving_mid_stream_is_noticed(up: FakeAnthropic) -> None:
    up.script(KEY, [stall_stream_after(3)])
    payload = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": HELLO}
    with (
        httpx.Client() as http,
        http.stream(
            "POST", f"{up.base_url}/v1/messages", headers={"x-api-key": KEY}, json=payload
        ) as response,
    ):
        first = next(response.iter_bytes())
    assert first.startswith(b"event: message_start")
    assert up.wait_for_disconnects(1, timeout=2.0)
    assert up.wait_for_idle(timeout=2.0) and up.in_flight == 0


def test_async_wait_for_disconnect_with_a_paced_stream(up: FakeAnthropic) -> None:
    up.script(KEY, [success(event_interval=0.2)])
    payload = {"model": MODEL, "max_tokens": 10, "stream": True, "messages": HELLO}

    async def main() -> bool:
        async with (
            httpx.AsyncClient() as http,
            http.stream(
                "POST", f"{up.base_url}/v1/messages", headers={"x-api-key": KEY}, json=payload
            ) as response,
        ):
            async for _ in response.aiter_bytes():
                break
        return await up.await_disconnects(1, within=2.0)

    assert asyncio.run(main())


def test_keep_alive_across_requests_and_clean_shutdown_with_open_connections() -> None:
    with FakeAnthropic() as up, httpx.Client(base_url=up.base_url) as http:
        for _ in range(3):
            assert http.get("/v1/models", headers={"x-api-key": KEY}).status_code == 200
        up.script(KEY, [hang()])
        with pytest.raises(httpx.ReadTimeout):
            http.get("/v1/models", headers={"x-api-key": KEY}, timeout=0.2)
        up.script(KEY, [stall_stream_after(2)])
        held = http.stream(
            "POST", "/v1/messages", headers={"x-api-key": KEY},
            json={"stream": True, "messages": HELLO},
        )  # fmt: skip
        response = held.__enter__()
        assert response.status_code == 200
        # leaving the block closes the server with that stream still open
    held.__exit__(None, None, None)
    assert up.errors == []
