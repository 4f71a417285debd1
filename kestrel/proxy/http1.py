"""HTTP/1.1 response framing for the upstream client, as pure functions over bytes.

Kestrel's upstream is Anthropic (or a gateway in front of it), so the client side needs far
less than a general parser: a status line, header fields, and which of the three framings the
body uses (RFC 9112 §6.3). What it does need is to refuse anything malformed instead of
guessing, because a misread response would be relayed to a client as if Anthropic had said
it. Every refusal is a `MalformedResponse`, which the transport reports as a protocol error
(the forwarder then tries the next account).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import NamedTuple

# A response head bigger than this is not from an API server. h11 uses 16 KiB by default for
# the same purpose; Anthropic's heads are about 1.5 KiB with every rate-limit header.
MAX_HEAD_BYTES = 64 * 1024
# A chunk-size line is a hex number and optional extensions; nothing honest comes near this.
MAX_CHUNK_LINE_BYTES = 4 * 1024

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\r\n]*))?")
# Field lines, then the blank line: an RFC 9110 §5.1 token for the name; a value of visible
# characters, spaces, tabs and obs-text (bytes ≥ 0x80), never CR, LF, NUL or other controls.
_FIELDS = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*\r\n")
_HEX_DIGITS = b"0123456789abcdefABCDEF"
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
# The fields that decide how the body is framed, whether the connection stays open, and how
# the body is decoded.
_BODY_FIELDS = frozenset({b"transfer-encoding", b"content-length", b"connection",
                          b"content-encoding"})


class MalformedResponse(ValueError):
    """The upstream's bytes are not an HTTP/1.1 response Kestrel can relay faithfully."""


class Framing(Enum):
    """How the end of a response body is found (RFC 9112 §6.3)."""

    NONE = "none"                  # 1xx, 204, 304, or the answer to HEAD
    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"    # HTTP/1.0 style: the body ends when the connection does


# Read for every answer: plain names (see `kestrel/domain.py` on enum members in Python 3.11).
NO_BODY, BY_LENGTH, CHUNKED, UNTIL_CLOSE = (Framing.NONE, Framing.LENGTH, Framing.CHUNKED,
                                            Framing.UNTIL_CLOSE)


class ResponseHead(NamedTuple):
    """A named tuple, made for every answer (see `kestrel.domain.RequestLog` for why)."""

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]  # names in lower case, values as they came
    framing: Framing
    length: int  # the body's size when `framing` is LENGTH, else 0
    keep_alive: bool  # whether the connection may carry another request after this one
    codings: list[bytes]  # the Content-Encoding values, as they came (most answers: none)


def parse_head(block: bytes, *, method: bytes) -> ResponseHead:
    """The response head in `block` (everything up to and including the blank line)."""
    if len(block) > MAX_HEAD_BYTES:
        raise MalformedResponse("the response head is too large")
    status_line, crlf, fields = block.partition(b"\r\n")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise MalformedResponse("the upstream did not answer with an HTTP/1.x status line")
    # One pass of the regex engine checks every field line at once: a token name right before
    # the colon (whitespace there, or a line starting with whitespace as in obs-fold, is how
    # response splitting hides; RFC 9112 §5.1 says reject) and no control characters.
    if not crlf or _FIELDS.fullmatch(fields) is None:
        raise MalformedResponse("the response has a malformed header block")
    minor, status, reason = match.group(1), int(match.group(2)), match.group(3) or b""
    headers: list[tuple[bytes, bytes]] = []
    body_fields: dict[bytes, list[bytes]] = {}  # the few headers the body depends on
    # Names are lower-cased here, once: everything downstream looks fields up by name.
    for line in fields[:-4].split(b"\r\n") if len(fields) > 2 else ():
        name, _, value = line.partition(b":")
        value = value.strip(b" \t")
        name = name.lower()
        headers.append((name, value))
        if name in _BODY_FIELDS:
            body_fields.setdefault(name, []).append(value)
    framing, length = _framing(status, method, body_fields)
    connection = body_fields.get(b"connection")
    keep_alive = (minor == b"1" and framing is not UNTIL_CLOSE
                  and not (connection and any(token.strip().lower() == b"close"
                                              for value in connection
                                              for token in value.split(b","))))
    return ResponseHead(status, reason, headers, framing, length, keep_alive,
                        body_fields.get(b"content-encoding", []))


def parse_chunk_size(line: bytes) -> int:
    """The size from one chunk-size line (its CRLF included), extensions ignored."""
    if not line.endswith(b"\r\n") or len(line) > MAX_CHUNK_LINE_BYTES:
        raise MalformedResponse("a malformed chunk-size line")
    size = line[:-2]
    # The usual line is the size alone: its digits are checked in one C call, not the regex.
    if 0 < len(size) <= 15 and not size.strip(_HEX_DIGITS):
        return int(size, 16)
    match = _CHUNK_SIZE.fullmatch(size)
    if match is None:
        raise MalformedResponse("a malformed chunk-size line")
    return int(match.group(1), 16)


def _framing(status: int, method: bytes, fields: dict[bytes, list[bytes]]
             ) -> tuple[Framing, int]:
    if method == b"HEAD" or status < 200 or status in (204, 304):
        return NO_BODY, 0
    encodings = fields.get(b"transfer-encoding")
    lengths = fields.get(b"content-length")
    if encodings:
        # Both framings at once is the classic smuggling shape (RFC 9112 §6.1): refuse it
        # rather than pick one. Chunked must be the final coding, and the only one we take.
        if lengths:
            raise MalformedResponse("the response has both Transfer-Encoding and Content-Length")
        codings = [c.strip().lower() for v in encodings for c in v.split(b",") if c.strip()]
        if codings != [b"chunked"]:
            raise MalformedResponse("the response uses a transfer coding other than chunked")
        return CHUNKED, 0
    if lengths:
        values = {v.strip() for value in lengths for v in value.split(b",")}
        if len(values) != 1:
            raise MalformedResponse("the response has conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit() or len(value) > 15:
            raise MalformedResponse("the response has an invalid Content-Length")
        return BY_LENGTH, int(value)
    return UNTIL_CLOSE, 0


class ChunkedDecoder:
    """The chunked transfer coding (RFC 9112 §7.1) undone incrementally.

    Fed whatever the socket delivered, it returns the payload bytes complete so far, so a read
    that brings several small chunks (a burst of SSE events) costs one call, not one per chunk.
    """

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self) -> None:
        self._pending = b""  # an unfinished size line or chunk end, kept for the next feed
        self._state = self._SIZE
        self._remaining = 0
        self.surplus = False  # bytes after the end: the connection is out of step

    @property
    def done(self) -> bool:
        return self._state == self._DONE

    def feed(self, data: bytes) -> bytes:
        if self._pending:
            data, self._pending = self._pending + data, b""
        elif self._state == self._SIZE:
            # The usual read of a stream: exactly one whole chunk, size line to its CRLF.
            stop = data.find(b"\r\n", 0, MAX_CHUNK_LINE_BYTES)
            if stop > 0:
                size = parse_chunk_size(data[:stop + 2])
                if size and len(data) == stop + size + 4 and data.endswith(b"\r\n"):
                    return data[stop + 2:stop + 2 + size]
        out: list[bytes] = []
        pos, end = 0, len(data)
        # Walks `data` by index: slicing off the front of a buffer per chunk costs a copy each.
        while pos < end:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, end - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                self._state = self._DATA_END
            elif state == self._DATA_END:
                if end - pos < 2:
                    break
                if data[pos:pos + 2] != b"\r\n":
                    raise MalformedResponse("a chunk is longer than its size says")
                pos += 2
                self._state = self._SIZE
            elif state == self._DONE:
                self.surplus = True
                break
            else:
                stop = data.find(b"\r\n", pos, pos + MAX_CHUNK_LINE_BYTES)
                if stop < 0:
                    if end - pos >= MAX_CHUNK_LINE_BYTES:
                        raise MalformedResponse("a malformed chunk-size or trailer line")
                    break
                line = data[pos:stop + 2]
                pos = stop + 2
                if state == self._SIZE:
                    self._remaining = parse_chunk_size(line)
                    self._state = self._DATA if self._remaining else self._TRAILER
                elif line == b"\r\n":  # the blank line that ends the (ignored) trailer section
                    self._state = self._DONE
        if pos < end and self._state != self._DONE:
            self._pending = data[pos:]
        return b"".join(out)
