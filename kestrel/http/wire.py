"""Protocol decisions with no I/O: what a response's head says, what an error looks like.

The connection code asks these functions and does the reading and writing itself, so every
rule about framing and headers can be tested without a socket (hypercorn splits protocol and
transport the same way).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus
from typing import NamedTuple

import h11

from kestrel.http.limits import ServerLimits
from kestrel.http.messages import (
    BadRequest,
    Headers,
    HeadersTooLarge,
    HTTPError,
    MethodNotAllowed,
    Response,
)

# A client's X-Request-ID is echoed only if it is short and made of characters that are safe
# in a log line and a header; anything else could smuggle log syntax or bloat every record.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# The server owns the framing of every response: a handler (or an upstream whose headers it
# forwards) cannot know whether we chunk, how long the body is on the wire, or whether this
# connection stays open. `keep-alive` is meaningful only next to `connection`. It owns the
# request id it echoes too.
_SERVER_OWNED = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive",
                           "x-request-id"})

# h11 sends an empty reason phrase unless given one; some tools print it.
_REASONS = {int(status): status.phrase.encode("ascii") for status in HTTPStatus}


class InvalidResponse(Exception):
    """A handler returned something that cannot go on the wire (bad status or header)."""


class NotImplementedByServer(HTTPError):
    """A request feature this server does not do (CONNECT tunnels, unknown transfer codings)."""

    status = 501


def choose_request_id(given: str | None) -> str:
    """The client's id when it is well-formed, else a new one. Both ends log the same value."""
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # Not from `secrets`: an id names a request, it guards nothing (a client may choose its
    # own), and `os.urandom` lets go of the interpreter lock for its system call, a moment in
    # which a log or database thread takes the lock and the request waits to get it back.
    # `random` is seeded from the system's randomness, again in a forked child.
    return f"req_{random.getrandbits(96):024x}"


class DateCache:
    """RFC 7231 IMF-fixdate for the `Date` header, formatted once per second, not per response.

    h11 adds no `Date` header, and RFC 7231 §7.1.1.2 requires one from a server with a clock.
    """

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(second, usegmt=True)
        return self._value


_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def error_type(exc: HTTPError) -> str:
    """A stable machine-readable name from the class: `BodyTooLarge` → `body_too_large`,
    `HTTPError` → `http_error`."""
    return _WORD_BOUNDARY.sub("_", type(exc).__name__).lower()


def _json_response(status: int, kind: str, message: str,
                   extra_headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    return Response(status=status, headers=[("content-type", "application/json"),
                                            *extra_headers], body=body)


def error_response(exc: HTTPError) -> Response:
    """The server's own rendering of an HTTP error the application did not render itself."""
    extra: list[tuple[str, str]] = []
    if isinstance(exc, MethodNotAllowed) and exc.allow:
        extra.append(("allow", ", ".join(exc.allow)))
    return _json_response(exc.status, error_type(exc), exc.message, extra)


def internal_error_response() -> Response:
    # Never the exception's text: it may hold paths, upstream replies or credentials. The
    # traceback goes to the server log, and x-request-id ties the two together.
    return _json_response(500, "internal_error", "internal server error")


def protocol_error(exc: h11.RemoteProtocolError) -> HTTPError:
    """An HTTP error for what h11 refused. h11's own message can quote the client's bytes,
    so the message is a fixed one per status."""
    status = exc.error_status_hint
    if status == 431:
        return HeadersTooLarge("request line and headers are too large")
    if status == 501:
        return NotImplementedByServer("unsupported transfer coding")
    return BadRequest("malformed request")


def head_size(event: h11.Request, headers: Headers) -> int:
    """Bytes of the request line and headers as they came on the wire (give or take spaces)."""
    size = len(event.method) + len(event.target) + len(b"HTTP/1.1") + 4
    for name, value in headers.raw:
        size += len(name) + len(value) + 4
    return size


def refuse_before_handler(event: h11.Request, headers: Headers, limits: ServerLimits, *,
                          received: int | None = None) -> HTTPError | None:
    """Requests answered without asking the handler, before any of the body is read.

    A body over the size limit is not among them: the handler is asked, and its first read
    fails (see `RequestBody`), so the application can shape that 413 like its other errors.
    `received`: the bytes that had come in when the head was parsed, if known (the head is
    never longer).
    """
    if "content-length" in headers and "transfer-encoding" in headers:
        # h11 follows RFC 7230 and lets Transfer-Encoding win, but two framings in one request
        # is the classic request-smuggling shape: refuse it (RFC 9112 §6.3 allows that).
        return BadRequest("malformed request")
    # h11's max_incomplete_event_size only fires while the head is still incomplete; a head
    # that arrived whole in one read passes it, so the limit is checked again on the result.
    if ((received is None or received > limits.max_header_bytes)
            and head_size(event, headers) > limits.max_header_bytes):
        return HeadersTooLarge("request line and headers are too large")
    # A 2xx to CONNECT would make h11 hand the socket over as a tunnel; we never tunnel.
    if event.method == b"CONNECT":
        return NotImplementedByServer("CONNECT is not supported")
    return None


# RFC 9110 §5.1 and §5.5: a token for the name (already lower case here); visible characters
# and obs-text for the value, with spaces and tabs only inside it. Stricter than h11, which
# lets control characters other than NUL through, and as strict as the upstream's fields are
# read (`kestrel/proxy/http1.py`). Checked on all the fields at once, each written as
# name NUL value CRLF: NUL and CR LF can be in neither part, so when the block matches and
# holds one NUL per field, every line is one field and every field one line. A value is runs
# of visible characters with runs of spaces and tabs between them; the quantifiers are
# possessive (Python 3.11), as nothing they take has to be given back.
_FIELD_LINES = re.compile(
    rb"(?:[!#$%&'*+\-.^_`|~0-9a-z]++\x00"
    rb"(?:[\x21-\x7e\x80-\xff]++(?:[ \t]++[\x21-\x7e\x80-\xff]++)*+)?+\r\n)*+")


class ResponseHead(NamedTuple):
    """A response head in two parts: what h11 must see to frame the body and keep the
    connection's state (the status, `content-length`, `connection: close`; h11 adds
    `transfer-encoding` itself), and every other field, already checked and encoded.

    h11 validates the fields of each event it sends, and then again in the copy it makes to
    set the framing; a proxied answer has fifteen fields, and that was a tenth of a request's
    CPU. Its own fields are the ones it decides on, so it is given only those. A named tuple
    rather than a frozen dataclass: one is made for every response, and a frozen dataclass
    sets each field through `object.__setattr__`.
    """

    framing: h11.Response
    fields: bytes  # "name: value\r\n" for each field, in order
    send_body: bool  # whether body bytes may follow (not for HEAD, 1xx, 204, 304)

    @property
    def status(self) -> int:
        return self.framing.status_code

    def encode(self, framing_bytes: bytes) -> bytes:
        """The whole head on the wire, from the bytes h11 wrote for `framing`: the other
        fields go after the status line."""
        split = framing_bytes.index(b"\r\n") + 2
        return framing_bytes[:split] + self.fields + framing_bytes[split:]


def _encode_fields(lines: list[str]) -> bytes:
    """The fields, each given as "name NUL value CRLF", as they go on the wire. Raises
    ValueError or UnicodeError for a field that h11 or RFC 9110 would refuse."""
    block = "".join(lines).encode("ascii")
    if block.count(0) != len(lines) or _FIELD_LINES.fullmatch(block) is None:
        raise ValueError("field")
    return block.replace(b"\x00", b": ")


def response_head(
    method: str,
    response: Response,
    *,
    request_id: str,
    date: str,
    server: str,
    close: bool,
) -> ResponseHead:
    """The head of `response`, and whether body bytes may follow it.

    Raises `InvalidResponse` if the handler's status or headers are not valid HTTP.
    """
    status = response.status
    # h11 sends 1xx as informational responses only; 1000 and up are not statuses.
    if not isinstance(status, int) or not 200 <= status < 1000:
        raise InvalidResponse(f"handler returned an invalid status ({status!r})")
    # 204 and 304 have no body by definition; HEAD gets the GET's headers but no body bytes at
    # all (h11 raises on any Data after a HEAD response).
    bodiless_status = status in (204, 304)
    send_body = method != "HEAD" and not bodiless_status
    lines: list[str] = []  # "name NUL value CRLF", as `_encode_fields` takes them
    framing: list[tuple[bytes, bytes]] = []
    given_length: str | None = None
    has_date = has_server = False
    for name, value in response.headers:
        key = name.lower()
        if key in _SERVER_OWNED:
            if key == "content-length":
                given_length = value
            continue
        if key == "date":
            has_date = True
        elif key == "server":
            has_server = True
        lines.append(f"{key}\x00{value}\r\n")
    if isinstance(response.body, bytes) and not bodiless_status:
        if method == "HEAD" and not response.body and given_length is not None:
            # A HEAD-specific handler that states the length its GET would have.
            if not (given_length.isascii() and given_length.isdigit()):
                raise InvalidResponse("handler returned an invalid content-length")
            framing.append((b"content-length", given_length.encode("ascii")))
        else:
            framing.append((b"content-length", b"%d" % len(response.body)))
    # An iterable body gets no Content-Length: h11 then sends it chunked to HTTP/1.1 clients
    # and delimits it by closing the connection for HTTP/1.0 ones.
    # h11 adds neither `Date` nor `Server`; a handler's own values win.
    if not has_date:
        lines.append(f"date\x00{date}\r\n")
    if not has_server and server:
        lines.append(f"server\x00{server}\r\n")
    lines.append(f"x-request-id\x00{request_id}\r\n")
    if close:
        framing.append((b"connection", b"close"))
    try:
        fields = _encode_fields(lines)
    except (UnicodeError, TypeError, ValueError):
        # Never the value itself: values hold secrets.
        names = ", ".join(line.partition("\x00")[0] for line in lines)
        raise InvalidResponse(f"handler returned an invalid header (names: {names})") from None
    if response.checked_headers:
        # Checked where they were parsed: checking and encoding a proxied answer's fields a
        # second time was a third of the head's cost.
        fields = b"".join([b"%b: %b\r\n" % field for field in response.checked_headers]
                          + [fields])
    reason = _REASONS.get(status, b"")
    # `_parsed=True` is h11's own way in for fields already checked: these are ours, and h11
    # checks them again anyway in the copy it makes to set the framing.
    event = h11.Response(status_code=int(status), headers=framing, reason=reason, _parsed=True)
    return ResponseHead(event, fields, send_body)
