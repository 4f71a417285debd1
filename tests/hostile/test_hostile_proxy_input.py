"""The proxy routes fed hostile bodies: invalid JSON, wrong types, huge and deeply nested bodies,
unknown fields. Each gets a clear 400 or 413 in its route's own error shape, never a 500, and
nothing Kestrel can tell is invalid JSON ever goes upstream.

What is Kestrel's to judge differs per route (README): `/v1/messages` and its `count_tokens`
pass the client's bytes through, so a well-formed JSON object with wrong types or unknown
fields goes to Anthropic, which decides; `/v1/chat/completions` is translated by Kestrel, so
wrong types there are Kestrel's 400 naming the parameter, and unknown fields are dropped.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_upstream import RecordedRequest, error
from support.figures import report
from support.hostile import assert_alive, no_errors_logged
from support.rawhttp import exchange, request, run
from support.stack import MODEL, Stack, account_key, message_body, running_stack

MAX_BODY = 1024 * 1024  # room for 100,000 nested arrays (200 kB); 413 cases stay cheap
ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
CHAT = "/v1/chat/completions"
ROUTES = (*ANTHROPIC_ROUTES, CHAT)


@dataclass
class Outcome:
    status: int
    body: Any
    forwarded: list[RecordedRequest]


@dataclass
class Api:
    """The stack, and one client with the Kestrel key for all the posting."""

    stack: Stack
    client: httpx.Client

    def post(self, route: str, raw: bytes | Iterator[bytes]) -> Outcome:
        """POST `raw` as it is (bytes, or an iterator: sent chunked); what came back, and what
        went upstream meanwhile."""
        before = len(self.stack.up.requests)
        response = self.client.post(route, content=raw)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Outcome(response.status_code, body, self.stack.up.requests[before:])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_stack(tmp_path_factory.mktemp("hostile-proxy"), accounts=("a",),
                       env={"MAX_BODY_BYTES": str(MAX_BODY)}) as stack, \
            stack.http(headers={"content-type": "application/json"}) as client:
        yield Api(stack, client)


@pytest.fixture(autouse=True)
def logs_no_errors(api: Api) -> Iterator[None]:
    """No input makes Kestrel log an error: a 500 caught by the app, or a failed connection."""
    with no_errors_logged(api.stack.kestrel):
        yield


def assert_error_shape(route: str, body: Any) -> str:
    """The route's own error shape (Anthropic's or OpenAI's, exactly); returns the error type."""
    if route == CHAT:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error_ = body["error"]
        assert set(error_) == {"message", "type", "param", "code"}, body
        assert isinstance(error_["message"], str) and error_["message"], body
        assert isinstance(error_["type"], str), body
        assert error_["param"] is None or isinstance(error_["param"], str), body
        assert error_["code"] is None or isinstance(error_["code"], str), body
        return str(error_["type"])
    # Anthropic's own errors, relayed, also carry its `request_id`.
    assert isinstance(body, dict) and set(body) - {"request_id"} == {"type", "error"}, body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str)
    return str(body["error"]["type"])


def figure(case: str, route: str, outcome: Outcome, kind: str = "-") -> None:
    report("Proxy invalid input", ("case", "route", "status", "error type",
                                   "forwarded upstream"),
           (case, route, outcome.status, kind, len(outcome.forwarded)))


def valid(route: str, **extra: Any) -> dict[str, Any]:
    """A request the route accepts, plus `extra` fields."""
    if route == CHAT:
        return {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], **extra}
    return message_body(**extra)


def nested(depth: int, kind: str = "array") -> str:
    """JSON nested `depth` deep: Python's parser gives up near its recursion limit (~1,000)."""
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


def with_content(route: str, content_json: str) -> bytes:
    """A valid request whose first message's content is the given raw JSON."""
    skeleton = json.dumps(valid(route)).replace('"hello"', "@CONTENT@")
    return skeleton.replace("@CONTENT@", content_json).encode()


# Bodies Kestrel can tell are not JSON (or not a JSON object): 400, and nothing goes upstream.
INVALID: dict[str, Callable[[str], bytes]] = {
    "not JSON": lambda route: b"{not json",
    "empty body": lambda route: b"",
    "truncated": lambda route: json.dumps(valid(route)).encode()[:-7],
    "trailing garbage": lambda route: json.dumps(valid(route)).encode() + b" }",
    "single quotes": lambda route: json.dumps(valid(route)).replace('"', "'").encode(),
    "array": lambda route: b"[]",
    "string": lambda route: b'"hello"',
    "number": lambda route: b"42",
    "null": lambda route: b"null",
    # Python's json takes these; no other JSON parser does (RFC 8259 §6).
    "NaN": lambda route: json.dumps(valid(route, temperature=float("nan"))).encode(),
    "Infinity": lambda route: json.dumps(valid(route, top_p=float("inf"))).encode(),
    "-Infinity": lambda route: json.dumps(valid(route, metadata={"x": float("-inf")})).encode(),
    # JSON between systems is UTF-8 (RFC 8259 §8.1); Python's json.loads also takes these.
    "UTF-16": lambda route: json.dumps(valid(route)).encode("utf-16"),
    "UTF-32": lambda route: json.dumps(valid(route)).encode("utf-32"),
    "invalid UTF-8": lambda route: with_content(route, '"@"').replace(b"@", b"caf\xe9"),
    "UTF-8-encoded surrogate": lambda route: with_content(route, '"@"').replace(
        b"@", "\ud800".encode("utf-8", "surrogatepass")),
    # Valid JSON syntax, but no Unicode text: Anthropic answers 400 "no low surrogate in
    # string". Clients do send it: a UTF-16 string (JavaScript's) cut between the two halves
    # of an emoji serialises to exactly this.
    "lone high surrogate": lambda route: with_content(route, '"cut \\ud83d"'),
    "lone low surrogate": lambda route: with_content(route, '"\\ude00 cut"'),
    "100,000 nested arrays": lambda route: with_content(route, nested(100_000)),
    "100,000 nested objects": lambda route: with_content(route, nested(100_000, "object")),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_json_is_refused_and_never_forwarded(api: Api, case: str) -> None:
    """Kestrel parses every proxy body to route it, so it knows: a 400 in the route's shape
    costs the client nothing, while forwarding would spend an upstream round trip (and an
    account's rate limit) on a request Anthropic refuses anyway."""
    for route in ROUTES:
        outcome = api.post(route, INVALID[case](route))
        kind = assert_error_shape(route, outcome.body) if outcome.status >= 400 else "-"
        figure(case, route, outcome, kind)
        assert (outcome.status, kind, outcome.forwarded) == (400, "invalid_request_error", []), (
            route, outcome.body)


def test_a_valid_emoji_escape_pair_is_not_a_lone_surrogate(api: Api) -> None:
    """The surrogate check must not refuse what JSON escapes correctly (Python clients send
    every non-ASCII character escaped)."""
    for route in ROUTES:
        raw = with_content(route, '"smile \\ud83d\\ude00"')
        outcome = api.post(route, raw)
        figure("escaped emoji (valid pair)", route, outcome)
        assert outcome.status == 200 and len(outcome.forwarded) == 1, outcome.body
        if route != CHAT:
            assert outcome.forwarded[0].body == raw


@pytest.mark.parametrize("depth", [500, 900, 960, 980, 990, 1000, 1010])
def test_nesting_near_the_parsers_limit_is_never_a_500(api: Api, depth: int) -> None:
    """Around the recursion limit a body may parse and then fail when serialised again (the
    OpenAI translation, the conversation key): answered or refused, never a 500."""
    for route in ROUTES:
        for where in ("content", "tool input"):
            if where == "content":
                raw = with_content(route, nested(depth))
            elif route == CHAT:
                raw = json.dumps(valid(route, tools=[{"type": "function", "function": {
                    "name": "t", "parameters": {"type": "object", "x": "@"}}}])).encode()
                raw = raw.replace(b'"@"', nested(depth).encode())
            else:
                raw = json.dumps(valid(route, tools=[{"name": "t", "input_schema": {
                    "type": "object", "x": "@"}}])).encode().replace(b'"@"', nested(depth).encode())
            outcome = api.post(route, raw)
            refused = outcome.status == 400 and not outcome.forwarded
            kind = assert_error_shape(route, outcome.body) if refused else "-"
            figure(f"{where} nested {depth} deep", route, outcome, kind)
            assert outcome.status != 500, (route, where, outcome.body)
            if not refused and route != CHAT:
                assert [r.body for r in outcome.forwarded] == [raw]


def test_body_over_the_limit_is_413_before_anything_goes_up(api: Api) -> None:
    """MAX_BODY_BYTES holds however the body comes: whole, chunked, or only announced."""
    assert api.stack.kestrel.port is not None
    for route in ROUTES:
        big = json.dumps(valid(route, metadata={"pad": "x" * MAX_BODY})).encode()
        outcome = api.post(route, big)
        figure("body over MAX_BODY_BYTES", route, outcome, assert_error_shape(route, outcome.body))
        assert (outcome.status, outcome.forwarded) == (413, [])
        # Chunked, so Kestrel only finds out as it counts.
        outcome = api.post(route, iter([big[:MAX_BODY // 2], big[MAX_BODY // 2:]]))
        figure("chunked body over MAX_BODY_BYTES", route, outcome,
               assert_error_shape(route, outcome.body))
        assert (outcome.status, outcome.forwarded) == (413, [])
        # Declared too large: refused before any of it is sent, without `100 Continue`.
        head = request("POST", route, [("x-api-key", api.stack.key),
                                       ("content-length", str(MAX_BODY + 1)),
                                       ("expect", "100-continue")], length=False)
        result = run(exchange(api.stack.kestrel.port, head, quiet=2.0))
        assert result.statuses == [413] and result.closed_by_server
        assert_error_shape(route, json.loads(result.responses[0].body))


WRONG_TYPES: dict[str, dict[str, Any]] = {
    "model": {"model": 5},
    "messages": {"messages": "hello"},
    "messages[0].role": {"messages": [{"role": 5, "content": "hi"}]},
    "messages[0].content": {"messages": [{"role": "user", "content": {"text": "hi"}}]},
    "max_tokens": {"max_tokens": "64"},
    "max_completion_tokens": {"max_completion_tokens": -1},
    "temperature": {"temperature": "hot"},
    "top_p": {"top_p": [1]},
    "stream": {"stream": "yes"},
    "stream_options": {"stream": True, "stream_options": "usage"},
    "stop": {"stop": 5},
    "tools": {"tools": {"type": "function"}},
    "tools[0].function.name": {"tools": [{"type": "function", "function": {"name": 5}}]},
    "tool_choice": {"tool_choice": 5},
    "response_format": {"response_format": "json"},
    "reasoning_effort": {"reasoning_effort": 3},
    "user": {"user": {"id": 1}},
    "n": {"n": "two"},
}


@pytest.mark.parametrize("param", list(WRONG_TYPES))
def test_chat_wrong_types_are_400_naming_the_parameter(api: Api, param: str) -> None:
    """The translation is Kestrel's: it refuses what it cannot translate, naming the field in
    `param` as OpenAI does, so the SDKs' BadRequestError says what to fix."""
    outcome = api.post(CHAT, json.dumps(valid(CHAT, **WRONG_TYPES[param])).encode())
    figure(f"wrong type: {param}", CHAT, outcome, assert_error_shape(CHAT, outcome.body))
    assert (outcome.status, outcome.forwarded) == (400, [])
    assert outcome.body["error"]["param"] == param, outcome.body


@pytest.mark.parametrize("route", ANTHROPIC_ROUTES)
def test_anthropic_routes_pass_wrong_types_to_anthropic_which_decides(api: Api,
                                                                      route: str) -> None:
    """Well-formed JSON is Anthropic's to judge: forwarded byte for byte, its 400 relayed."""
    message = "messages: Input should be a valid list"
    for field, value in (("model", 5), ("messages", "hello"), ("max_tokens", "64"),
                         ("stream", "yes")):
        raw = json.dumps({**message_body(), field: value}).encode()
        api.stack.up.script(account_key("a"), [error(400, "invalid_request_error", message)])
        outcome = api.post(route, raw)
        figure(f"wrong type: {field}", route, outcome, assert_error_shape(route, outcome.body))
        assert [r.body for r in outcome.forwarded] == [raw]
        assert outcome.status == 400 and outcome.body["error"]["message"] == message


def test_unknown_fields(api: Api) -> None:
    """Passed through byte for byte on the Anthropic routes; dropped on the chat route."""
    unknown = {"kestrel_unknown_field": {"deep": [1, {"x": None}]}, "x-unknown": "v"}
    for route in ROUTES:
        raw = json.dumps(valid(route, **unknown)).encode()
        outcome = api.post(route, raw)
        figure("unknown fields", route, outcome)
        assert outcome.status == 200 and len(outcome.forwarded) == 1, outcome.body
        sent = outcome.forwarded[0].body
        if route == CHAT:
            assert b"kestrel_unknown_field" not in sent and b"x-unknown" not in sent
            assert outcome.body["object"] == "chat.completion"
        else:
            assert sent == raw


USER_IDS = {
    "user_id nested 1,000 deep": '{"session_id": ' + nested(1_000) + "}",
    "user_id nested 100,000 deep": '{"session_id": ' + nested(100_000) + "}",
    "user_id with a lone surrogate": '{"session_id": "\\ud800"}',
    "user_id not JSON": "{oops",
}


@pytest.mark.parametrize("route", ANTHROPIC_ROUTES)
@pytest.mark.parametrize("case", list(USER_IDS))
def test_json_inside_a_string_is_forwarded_whatever_it_holds(api: Api, route: str,
                                                             case: str) -> None:
    """Claude Code's `metadata.user_id` is a JSON string Kestrel reads for the session id.
    Whatever it holds, the body is valid JSON: Kestrel cannot refuse it, and must not fail."""
    raw = json.dumps(message_body(metadata={"user_id": USER_IDS[case]})).encode()
    outcome = api.post(route, raw)
    figure(case, route, outcome)
    assert outcome.status == 200, outcome.body
    assert [r.body for r in outcome.forwarded] == [raw]


# -- Hypothesis: any JSON value in any known field of the chat route ------------------------

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
               | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(string.printable, max_size=8)
               | st.sampled_from(["user", "assistant", "system", "tool", "function", "text",
                                  "image_url", "auto", "required", "json_schema", "high"]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(
                               ["role", "content", "type", "text", "function", "name",
                                "arguments", "tool_calls", "id", "tool_call_id", "image_url",
                                "url", "parameters", "json_schema", "schema",
                                "include_usage"]), inner, max_size=3), max_leaves=10)
CHAT_FIELDS = st.sampled_from(["model", "messages", "max_tokens", "max_completion_tokens",
                               "temperature", "top_p", "stream", "stream_options", "stop",
                               "tools", "tool_choice", "parallel_tool_calls", "response_format",
                               "reasoning_effort", "user", "n", "modalities", "metadata"])


def test_chat_fields_of_any_type_are_answered_or_refused_never_a_500(api: Api) -> None:
    """Any JSON value in any field the translation reads: a 400 naming the problem (nothing
    forwarded) or an answer; never a crash in the translation or its serialisation."""
    statuses: Counter[int] = Counter()
    forwarded = 0

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.dictionaries(CHAT_FIELDS, JSON_VALUES, max_size=4))
    def case(fields: dict[str, Any]) -> None:
        nonlocal forwarded
        outcome = api.post(CHAT, json.dumps(valid(CHAT, **fields)).encode())
        statuses[outcome.status] += 1
        forwarded += len(outcome.forwarded)
        assert outcome.status in (200, 400), outcome.body
        if outcome.status == 400:
            assert_error_shape(CHAT, outcome.body)
            assert outcome.forwarded == []
        else:
            assert len(outcome.forwarded) == 1

    try:
        case()
    finally:
        report("Proxy invalid input", ("case", "route", "status", "error type",
                                       "forwarded upstream"),
               ("Hypothesis: any JSON in known fields", CHAT,
                " ".join(f"{s}x{n}" for s, n in sorted(statuses.items())), "-", forwarded))
    assert_alive(api.stack.kestrel)
