"""The protocol decisions of `kestrel.http.wire`, without sockets."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime

import h11
import pytest

from kestrel.http import (
    BodyTooLarge,
    Headers,
    HTTPError,
    MethodNotAllowed,
    NotFound,
    Response,
    ServerLimits,
)
from kestrel.http.wire import (
    DateCache,
    InvalidResponse,
    ResponseHead,
    choose_request_id,
    error_response,
    internal_error_response,
    refuse_before_handler,
    response_head,
)

GENERATED_ID = re.compile(r"req_[0-9a-f]{24}")


def on_the_wire(head: ResponseHead, method: bytes = b"GET") -> h11.Response:
    """The head as a client reads it: h11's framing written by a real h11 server connection,
    the other fields spliced in, the whole read back by an h11 client."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(method + b" / HTTP/1.1\r\nhost: x\r\n\r\n")
    server.next_event()
    wire = head.encode(server.send(head.framing) or b"")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    client.receive_data(wire)
    event = client.next_event()
    assert isinstance(event, h11.Response)
    return event


def headers_of(head: ResponseHead, method: bytes = b"GET") -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1"))
            for k, v in on_the_wire(head, method).headers]


def head(method: str, response: Response, *, close: bool = False) -> ResponseHead:
    return response_head(method, response, request_id="rid-1", date="DATE", server="srv",
                         close=close)


async def _gen() -> AsyncIterator[bytes]:
    yield b"x"


@pytest.mark.parametrize("given", ["abc", "A.b_c:d-9", "x" * 128])
def test_well_formed_request_id_is_kept(given: str) -> None:
    assert choose_request_id(given) == given


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 129, "semi;colon", "é", "a\n"])
def test_other_request_ids_are_replaced(given: str | None) -> None:
    assert GENERATED_ID.fullmatch(choose_request_id(given))
    assert choose_request_id(given) != choose_request_id(given)


def test_date_is_imf_fixdate_and_cached_per_second() -> None:
    cache = DateCache()
    assert cache.get(0.0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert cache.get(0.9) == "Thu, 01 Jan 1970 00:00:00 GMT"
    value = cache.get(1_700_000_000.5)
    assert value == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert parsedate_to_datetime(value).timestamp() == 1_700_000_000


def test_bytes_body_gets_its_own_content_length_and_framing_headers_are_dropped() -> None:
    answer = head("GET", Response(200, [
        ("Content-Length", "999"), ("Transfer-Encoding", "gzip"), ("Connection", "keep-alive"),
        ("Keep-Alive", "timeout=5"), ("X-Request-ID", "spoofed"), ("X-Other", "1"),
    ], b"hello"))
    assert answer.send_body
    assert headers_of(answer) == [("x-other", "1"), ("date", "DATE"), ("server", "srv"),
                                  ("x-request-id", "rid-1"), ("content-length", "5")]
    assert on_the_wire(answer).reason == b"OK"


def test_checked_headers_go_first_as_they_are() -> None:
    # A proxy's relayed fields, checked where it parsed them: sent before the handler's own,
    # obs-text included (as the upstream sent it), without a second check.
    answer = head("GET", Response(200, [("x-own", "1")], b"hi", [
        (b"request-id", b"req_1"), (b"anthropic-ratelimit-requests-limit", b"caf\xe9")]))
    assert headers_of(answer) == [
        ("request-id", "req_1"), ("anthropic-ratelimit-requests-limit", "caf\u00e9"),
        ("x-own", "1"), ("date", "DATE"), ("server", "srv"), ("x-request-id", "rid-1"),
        ("content-length", "2")]


def test_iterable_body_gets_no_content_length() -> None:
    gen = _gen()
    answer = head("GET", Response(200, [("content-length", "1")], gen))
    names = [name for name, _ in headers_of(answer)]
    # h11 chunks it for an HTTP/1.1 client.
    assert answer.send_body and "content-length" not in names
    assert ("transfer-encoding", "chunked") in headers_of(answer)
    # Close the never-started generator so no "never awaited" warning is left behind.
    gen.aclose().close()  # type: ignore[attr-defined]


def test_head_keeps_get_headers_but_sends_no_body() -> None:
    answer = head("HEAD", Response(200, [], b"twelve bytes"))
    assert not answer.send_body
    assert ("content-length", "12") in headers_of(answer, b"HEAD")
    # A HEAD-only handler may state the length its GET would have, if it is a length.
    answer = head("HEAD", Response(200, [("content-length", "4096")], b""))
    assert ("content-length", "4096") in headers_of(answer, b"HEAD")
    with pytest.raises(InvalidResponse):
        head("HEAD", Response(200, [("content-length", "\u00b2")], b""))


def test_no_content_status_has_no_length_and_no_body() -> None:
    answer = head("GET", Response(204, [], b""))
    assert not answer.send_body
    assert "content-length" not in dict(headers_of(answer))


def test_close_and_handler_date_server_are_respected() -> None:
    answer = head("GET", Response(200, [("date", "THEIRS"), ("server", "app")], b""),
                     close=True)
    pairs = headers_of(answer)
    assert ("date", "THEIRS") in pairs and ("server", "app") in pairs
    assert ("date", "DATE") not in pairs and pairs[-1] == ("connection", "close")


@pytest.mark.parametrize("response", [
    Response(200, [("x-bad", "secret-value\r\ninjected: 1")], b""),
    Response(99, [], b""),
    Response(200, [("bad name", "secret-value")], b""),
    Response(200, [("x-a: b", "secret-value")], b""),
    Response(200, [("x-a\x00b", "secret-value")], b""),
    Response(200, [("x-a", "secret\x00value")], b""),
    Response(200, [("x-a", "secret-value\r\nx-b\x00c")], b""),
])
def test_invalid_response_is_refused_without_quoting_values(response: Response) -> None:
    with pytest.raises(InvalidResponse) as info:
        head("GET", response)
    assert "secret-value" not in str(info.value)


FIELD_SAMPLES = [
    ("x-ok", ""), ("x-ok", "a"), ("x-ok", "a \t b"), ("x-ok", " leading"), ("x-ok", "trailing "),
    ("x-ok", "tab\t"), ("x-ok", "nul\x00"), ("x-ok", "del\x7f"), ("x-ok", "bell\x07"),
    ("x-ok", "caf\u00e9"), ("x-ok", "\u2603"), ("x-ok", "cr\rlf"), ("x-ok", "!#$%&'*+-.^_`|~"),
    ("colon:name", "v"), ("", "v"), ("sp ace", "v"), ("x-\u00e9", "v"), ("x(paren)", "v"),
    ("x-!#$%&'*+-.^_`|~0-9", "v"),
]


@pytest.mark.parametrize(("name", "value"), FIELD_SAMPLES)
def test_fields_are_refused_when_h11_or_rfc_9110_would_refuse_them(name: str, value: str
                                                                  ) -> None:
    # The server checks fields itself and hands h11 the result as already checked: whatever
    # h11's own checks refuse must still be refused, and so must control characters, which
    # RFC 9110 §5.5 forbids in a value and h11 lets through.
    try:
        h11.Response(status_code=200, headers=[(name, value)])
        refused = re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value) is not None
    except (h11.LocalProtocolError, UnicodeError):
        refused = True
    if refused:
        with pytest.raises(InvalidResponse):
            head("GET", Response(200, [(name, value)], b""))
    else:
        answer = head("GET", Response(200, [(name, value)], b""))
        assert (name.lower(), value) in headers_of(answer)


@pytest.mark.parametrize("status", [100, 199, 1000, -1, "200", 200.0])
def test_statuses_h11_refuses_are_refused(status: object) -> None:
    with pytest.raises(InvalidResponse):
        head("GET", Response(status, [], b""))  # type: ignore[arg-type]


def test_error_responses_are_plain_json() -> None:
    resp = error_response(MethodNotAllowed("no", ("GET", "HEAD")))
    assert resp.status == 405
    assert ("allow", "GET, HEAD") in resp.headers
    assert isinstance(resp.body, bytes)
    assert json.loads(resp.body) == {"error": {"type": "method_not_allowed", "message": "no"}}
    assert error_response(NotFound("gone")).status == 404
    assert error_response(BodyTooLarge("big")).status == 413
    assert json.loads(error_response(HTTPError("x")).body)["error"]["type"] == "http_error"  # type: ignore[arg-type]
    internal = internal_error_response()
    assert internal.status == 500
    assert json.loads(internal.body)["error"]["type"] == "internal_error"  # type: ignore[arg-type]


def _request(method: bytes = b"GET", headers: list[tuple[str, str]] | None = None,
             target: bytes = b"/") -> h11.Request:
    return h11.Request(method=method, target=target,
                       headers=[("host", "x"), *(headers or [])])


def _refusal(event: h11.Request, limits: ServerLimits) -> HTTPError | None:
    return refuse_before_handler(event, Headers.from_raw(event.headers.raw_items()), limits)


def test_refusals_before_the_handler() -> None:
    limits = ServerLimits(max_header_bytes=200, max_body_bytes=100)
    assert _refusal(_request(), limits) is None
    # A large declared body is the body reader's business, not a refusal of the head.
    assert _refusal(_request(headers=[("content-length", "101")]), limits) is None
    both = _refusal(_request(headers=[("Content-Length", "1"),
                                      ("Transfer-Encoding", "chunked")]), limits)
    assert both is not None and both.status == 400
    long_head = _refusal(_request(headers=[("x-pad", "a" * 200)]), limits)
    assert long_head is not None and long_head.status == 431
    # The limit counts bytes as they came: 4 for the request line's spaces and CRLF, and 4 for
    # each field's ": " and CRLF. 200 bytes exactly pass; one more does not.
    line = len(b"GET") + len(b"/") + len(b"HTTP/1.1") + 4 + len(b"host") + len(b"x") + 4
    pad = 200 - line - len(b"x-pad") - 4
    def padded(size: int) -> h11.Request:  # obs-text: one byte each, decoded as latin-1
        return h11.Request(method=b"GET", target=b"/",
                           headers=[(b"host", b"x"), (b"x-pad", b"\xe9" * size)])
    assert _refusal(padded(pad), limits) is None
    over = _refusal(padded(pad + 1), limits)
    assert over is not None and over.status == 431
    # Told how many bytes had come in with the head (the server knows), the size is counted
    # only when they were more than the limit: the head is never longer than they were.
    event = padded(pad + 1)
    fields = Headers.from_raw(event.headers.raw_items())
    counted = refuse_before_handler(event, fields, limits, received=201)
    assert counted is not None and counted.status == 431
    assert refuse_before_handler(event, fields, limits, received=200) is None
    connect = _refusal(_request(b"CONNECT", target=b"example.com:443"), limits)
    assert connect is not None and connect.status == 501


@pytest.mark.parametrize("make", [
    lambda fields: Headers(fields),
    lambda fields: Headers.from_raw([(k.encode(), v.encode()) for k, v in fields]),
])
def test_headers_find_any_case_and_the_first_of_a_repeated_name(make: object) -> None:
    assert callable(make)
    headers = make([("X-Trace", "one"), ("Accept", "a"), ("x-trace", "two")])
    assert headers.get("x-trace") == headers.get("X-TRACE") == "one"
    assert headers.get_all("X-Trace") == ["one", "two"]
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    assert "ACCEPT" in headers and "missing" not in headers
    assert headers.items() == [("x-trace", "one"), ("accept", "a"), ("x-trace", "two")]
    assert headers.raw == [(b"x-trace", b"one"), (b"accept", b"a"), (b"x-trace", b"two")]
    assert len(headers) == 3


def test_headers_keep_obs_text_as_it_came_and_refuse_text_no_field_can_hold() -> None:
    headers = Headers.from_raw([(b"X-Team", b"caf\xe9")])
    assert headers.raw == [(b"x-team", b"caf\xe9")]
    assert headers.get("x-team") == "caf\xe9" and headers.items() == [("x-team", "caf\xe9")]
    assert headers.get("x-\u20ac") is None  # a name outside latin-1 names no field
    with pytest.raises(UnicodeEncodeError):
        Headers([("x-price", "10 \u20ac")])
