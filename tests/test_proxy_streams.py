"""Streams through Kestrel: relayed as they come, never retried once started, closed upstream
when the client leaves, and many at once; and the request logs and stats they leave behind."""

from __future__ import annotations

import asyncio
import socket
import time

import anthropic
import httpx
import pytest

from kestrel.translate.sse import SseDecoder

from fake_upstream import cut_stream_after, success
from support.stack import MODEL, Stack, account_key, message_body


@pytest.fixture
def stack(ranked_stack: Stack) -> Stack:
    return ranked_stack


def test_events_arrive_as_they_are_sent(stack: Stack) -> None:
    """Paced upstream events reach the client one by one, not buffered into one piece."""
    stack.up.script(account_key("a"), [success(event_interval=0.1)])
    arrivals: list[float] = []
    with stack.http() as client, client.stream(
            "POST", "/v1/messages", json=message_body(stream=True)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "content-length" not in response.headers
        decoder = SseDecoder()
        for chunk in response.iter_raw():
            arrivals.extend(time.monotonic() for _ in decoder.feed(chunk))
    assert len(arrivals) >= 8
    assert arrivals[-1] - arrivals[0] >= 0.1 * (len(arrivals) - 2)


def test_a_stream_cut_after_it_started_is_not_retried(stack: Stack) -> None:
    stack.up.script(account_key("a"), [cut_stream_after(3)])
    received = b""
    with stack.http() as client, client.stream(
            "POST", "/v1/messages", json=message_body(stream=True)) as response:
        assert response.status_code == 200
        # The client sees the stream end badly (the connection closes mid-body), as it would
        # from Anthropic itself: a started stream cannot become another account's stream.
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_raw():
                received += chunk
    assert b"message_start" in received and b"message_stop" not in received
    assert [r.credential for r in stack.up.requests] == [account_key("a")]
    (row,) = stack.logs(expect=1)
    assert row["error_type"] in ("stream_incomplete", "upstream_disconnected")


def test_client_disconnect_closes_the_upstream_stream(stack: Stack) -> None:
    stack.up.script(account_key("a"), [success(event_interval=0.3, text="word " * 60)])
    body = (b'{"model":"%s","max_tokens":64,"stream":true,'
            b'"messages":[{"role":"user","content":"hi"}]}' % MODEL.encode())
    with socket.create_connection(("127.0.0.1", stack.kestrel.port)) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: k\r\nx-api-key: " + stack.key.encode()
                     + b"\r\nanthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
                     + b"content-length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while b"message_start" not in received:
            piece = sock.recv(65536)
            assert piece, received
            received += piece
    assert stack.up.wait_for_disconnects(1, timeout=3)
    (row,) = stack.logs(expect=1)
    assert row["status"] == 499 and row["error_type"] == "client_disconnected"
    # What was generated is paid for: the input, and the output the stream had reported.
    assert row["input_tokens"] > 0 and row["cost_usd"] > 0


def test_two_hundred_concurrent_streams_complete_intact(stack: Stack) -> None:
    async def run() -> list[str]:
        client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=stack.key, max_retries=0,
                                          timeout=60)

        async def one(n: int) -> str:
            async with client.messages.stream(**message_body(f"stream {n}")) as stream:
                message = await stream.get_final_message()
            assert message.stop_reason == "end_turn"
            return "".join(b.text for b in message.content if b.type == "text")

        try:
            return await asyncio.gather(*(one(n) for n in range(200)))
        finally:
            await client.close()

    texts = asyncio.run(run())
    assert len(texts) == 200 and len(set(texts)) == 1 and texts[0]
    assert len(stack.up.requests) == 200


def test_logs_and_stats_add_up_to_what_was_sent(stack: Stack) -> None:
    stack.up.script(account_key("a"), [success(usage={"cache_read_input_tokens": 100,
                                                      "cache_creation_input_tokens": 7})])
    # A second client key, so that the rows' key id differs from their account's id.
    with stack.admin() as admin:
        second = admin.post("/admin/keys", json={"name": "second"}).json()
    client = stack.closed_with_stack(anthropic.Anthropic(base_url=stack.url,
                                                         api_key=second["key"], max_retries=0))
    first = client.messages.with_raw_response.create(**message_body("one"))
    with client.messages.stream(**message_body("two")) as stream:
        stream.get_final_message()
    client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "x"}])
    with stack.http() as raw:
        raw.post("/v1/messages", content=b"{broken")

    rows = stack.logs(expect=4)
    assert [(r["route"], r["status"], r["stream"]) for r in rows] == [
        ("/v1/messages", 400, False), ("/v1/messages/count_tokens", 200, False),
        ("/v1/messages", 200, True), ("/v1/messages", 200, False)]
    sent = [r.usage for r in stack.up.requests if r.route == "/v1/messages"]
    messages = [r for r in rows if r["route"] == "/v1/messages" and r["status"] == 200]
    for row, usage in zip(reversed(messages), sent, strict=True):
        assert row["input_tokens"] == usage["input_tokens"]
        assert row["output_tokens"] == usage["output_tokens"]
        assert row["cache_read_tokens"] == usage.get("cache_read_input_tokens", 0)
        assert row["cache_creation_tokens"] == usage.get("cache_creation_input_tokens", 0)
        assert row["model"] == MODEL and row["account_id"] == stack.accounts["a"]
        assert row["attempts"][0]["account_id"] == stack.accounts["a"]
        assert row["latency_ms"] > 0 and row["ttfb_ms"] is not None
    assert rows[0]["error_type"] == "invalid_request_error"

    with stack.admin() as admin:
        stats = admin.get("/admin/stats", params={"window": "1h"}).json()
        keys = admin.get("/admin/keys").json()["data"]
    # Fields of the same type side by side, each where it belongs.
    assert messages[-1]["request_id"] == first.headers["x-kestrel-request-id"]
    for row in messages:
        assert (row["key_id"], row["client"]) == (second["id"], "127.0.0.1")
        assert row["user_agent"].startswith("Anthropic/Python")
        assert row["priced"] and row["cost_usd"] > 0
    totals = stats["totals"]
    assert totals["requests"] == 4 and totals["errors"] == 1
    assert totals["input_tokens"] == sum(u["input_tokens"] for u in sent)
    assert totals["output_tokens"] == sum(u["output_tokens"] for u in sent)
    assert totals["cache_read_tokens"] == 100
    assert sum(b["requests"] for b in stats["series"]) == 4
    assert keys[0]["last_used_at"] is not None
