"""`/v1/messages` and friends through a real Kestrel: what goes upstream, what comes back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from fake_upstream import error, success
from support.stack import MODEL, Stack, account_key, message_body, running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, accounts=("a",)) as stack:
        yield stack


CLAUDE_CODE_BETAS = ("claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,"
                     "fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27,"
                     "token-efficient-tools-2025-02-19,prompt-caching-scope-2026-01-05,"
                     "effort-2025-11-24")


def test_body_goes_upstream_byte_for_byte_with_the_accounts_credential(stack: Stack) -> None:
    # Odd spacing, key order, escapes and a thinking signature: any re-serialisation shows.
    raw = ('{ "max_tokens":64,  "model" : "MODEL", "messages":[{"role":"user","content":'
           '[{"type":"text","text":"caf\\u00e9 \u2713"}]},{"role":"assistant","content":[{"type":'
           '"thinking","thinking":"hm","signature":"EqQBCkYIARgCIkB/+="}]},{"role":"user",'
           '"content":"go on"}] , "metadata":{"user_id":"u1"}}').replace("MODEL", MODEL).encode()
    headers = {"x-api-key": stack.key, "anthropic-version": "2023-06-01",
               "anthropic-beta": CLAUDE_CODE_BETAS, "content-type": "application/json",
               "user-agent": "claude-cli/2.1.0 (external, cli)", "x-app": "cli",
               "x-claude-code-session-id": "sess-1", "x-stainless-lang": "js",
               "x-request-id": "client-trace-1"}
    with stack.http() as client:
        response = client.post("/v1/messages?beta=true", content=raw, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "message"
    assert response.headers["x-kestrel-request-id"] == "client-trace-1"
    assert float(response.headers["x-kestrel-overhead-ms"]) >= 0
    assert response.headers["request-id"].startswith("req_")
    assert "anthropic-ratelimit-requests-remaining" in response.headers

    seen = stack.up.requests[-1]
    assert seen.body == raw
    assert seen.path == "/v1/messages?beta=true"
    assert seen.credential == account_key("a")
    upstream = dict(seen.headers)
    assert upstream["anthropic-beta"] == CLAUDE_CODE_BETAS
    for name in ("anthropic-version", "user-agent", "x-app", "x-claude-code-session-id",
                 "x-stainless-lang", "content-type"):
        assert upstream[name] == headers[name], name
    assert stack.key not in json.dumps(seen.headers)
    assert "authorization" not in upstream
    assert "x-request-id" not in upstream


def test_sdk_plain_stream_tools_thinking_count_and_models(stack: Stack) -> None:
    client = stack.sdk()
    message = client.messages.create(**message_body("hi"))
    assert message.content[0].type == "text" and message.content[0].text

    with client.messages.stream(
        **message_body("please use tool"), thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "get_weather", "description": "weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}],
    ) as stream:
        final = stream.get_final_message()
    kinds = [block.type for block in final.content]
    assert kinds[0] == "thinking" and "tool_use" in kinds
    assert final.content[0].signature  # type: ignore[union-attr]
    tool = next(b for b in final.content if b.type == "tool_use")
    assert isinstance(tool.input, dict) and tool.input  # reassembled from input_json_delta
    assert final.stop_reason == "tool_use"

    counted = client.messages.count_tokens(model=MODEL,
                                           messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0

    models = client.models.list()
    assert MODEL in [m.id for m in models.data]


def test_models_in_both_shapes_and_cached(stack: Stack) -> None:
    with stack.kestrel.client(headers={"x-api-key": stack.key}) as client:
        openai_shape = client.get("/v1/models").json()
        anthropic_shape = client.get("/v1/models",
                                     headers={"anthropic-version": "2023-06-01"}).json()
    assert openai_shape["object"] == "list"
    entry = next(m for m in openai_shape["data"] if m["id"] == MODEL)
    assert entry["object"] == "model" and entry["owned_by"] == "anthropic"
    assert isinstance(entry["created"], int) and entry["created"] > 1_600_000_000
    assert anthropic_shape["has_more"] is False
    assert anthropic_shape["first_id"] == anthropic_shape["data"][0]["id"]
    assert {"type", "id", "display_name", "created_at"} <= set(anthropic_shape["data"][0])
    assert len([r for r in stack.up.requests if r.route == "/v1/models"]) == 1


@pytest.mark.parametrize(("headers", "message"), [
    ({}, "missing API key"),
    ({"x-api-key": "kst_not-a-real-key"}, "invalid or revoked API key"),
    ({"authorization": "Basic abc"}, "missing API key"),
])
def test_unauthenticated_requests_are_401_in_anthropic_shape(stack: Stack,
                                                              headers: dict[str, str],
                                                              message: str) -> None:
    with stack.kestrel.client() as client:
        response = client.post("/v1/messages", json=message_body(), headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert message in body["error"]["message"]
    assert stack.up.requests == []


def test_bearer_key_works_and_a_revoked_key_stops_at_once(stack: Stack) -> None:
    client = stack.closed_with_stack(
        anthropic.Anthropic(base_url=stack.url, auth_token=stack.key, max_retries=0))
    assert client.messages.create(**message_body()).content
    assert dict(stack.up.requests[-1].headers).get("authorization") is None
    with stack.admin() as admin:
        key_id = admin.get("/admin/keys").json()["data"][0]["id"]
        assert admin.delete(f"/admin/keys/{key_id}").status_code == 200
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(**message_body())


@pytest.mark.parametrize("raw", [b"{not json", b"[1]", b"", b'"text"'])
def test_invalid_json_is_400_and_never_forwarded(stack: Stack, raw: bytes) -> None:
    with stack.http() as client:
        response = client.post("/v1/messages", content=raw,
                               headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert stack.up.requests == []


def test_probes_answer_without_credentials(stack: Stack) -> None:
    with stack.kestrel.client() as client:
        for path in ("/", "/api/hello"):
            response = client.head(path)
            assert 200 <= response.status_code < 400, path
            assert response.content == b""


def test_gzip_upstream_body_is_decoded_for_the_client(stack: Stack) -> None:
    stack.up.script(account_key("a"), [success(gzip=True)])
    with stack.http() as client:
        # Claude Code asks for every coding; upstream is asked only for what Kestrel can undo.
        response = client.post("/v1/messages", json=message_body(),
                               headers={"accept-encoding": "gzip, deflate, br, zstd"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers
    assert response.json()["type"] == "message"
    asked = dict(stack.up.requests[-1].headers)["accept-encoding"]
    with httpx.Client() as reference:  # httpx offers exactly the codings it can decode
        assert asked == reference.headers["accept-encoding"]
    (row,) = stack.logs(expect=1)
    assert row["output_tokens"] == stack.up.requests[-1].usage["output_tokens"]


def test_upstream_client_errors_are_returned_as_they_are(stack: Stack) -> None:
    stack.up.script(account_key("a"), [error(404, "not_found_error", "model: no-such-model")])
    with stack.http() as client:
        response = client.post("/v1/messages", json={**message_body(), "model": "no-such-model"})
    assert response.status_code == 404
    assert response.json()["error"] == {"type": "not_found_error",
                                        "message": "model: no-such-model"}
    assert response.headers["request-id"].startswith("req_")
    assert stack.account("a")["status"] == "active"
    assert len(stack.up.requests) == 1
