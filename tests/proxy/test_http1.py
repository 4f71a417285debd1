"""The upstream client's response framing, table by table (pure, no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.proxy.http1 import (
    MAX_HEAD_BYTES,
    ChunkedDecoder,
    Framing,
    MalformedResponse,
    parse_chunk_size,
    parse_head,
)


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize(("block", "method", "framing", "length", "keep_alive"), [
    (head("HTTP/1.1 200 OK", "Content-Length: 12"), b"POST", Framing.LENGTH, 12, True),
    (head("HTTP/1.1 200 OK", "Content-Length: 12, 12"), b"POST", Framing.LENGTH, 12, True),
    (head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked"), b"POST", Framing.CHUNKED, 0, True),
    (head("HTTP/1.1 200 OK", "transfer-encoding: Chunked"), b"POST", Framing.CHUNKED, 0, True),
    (head("HTTP/1.1 200 OK", "Content-Type: text/plain"), b"GET", Framing.UNTIL_CLOSE, 0,
     False),
    (head("HTTP/1.1 200 OK", "Content-Length: 12"), b"HEAD", Framing.NONE, 0, True),
    (head("HTTP/1.1 204 No Content"), b"DELETE", Framing.NONE, 0, True),
    (head("HTTP/1.1 304 Not Modified", "Content-Length: 9"), b"GET", Framing.NONE, 0, True),
    (head("HTTP/1.1 100 Continue"), b"POST", Framing.NONE, 0, True),
    (head("HTTP/1.0 200 OK", "Content-Length: 2"), b"GET", Framing.LENGTH, 2, False),
    (head("HTTP/1.1 200 OK", "Content-Length: 2", "Connection: keep-alive, Close"), b"GET",
     Framing.LENGTH, 2, False),
])
def test_framing(block: bytes, method: bytes, framing: Framing, length: int,
                 keep_alive: bool) -> None:
    parsed = parse_head(block, method=method)
    assert (parsed.framing, parsed.length, parsed.keep_alive) == (framing, length, keep_alive)


def test_status_reason_and_headers_are_kept_in_order_names_in_lower_case() -> None:
    parsed = parse_head(head("HTTP/1.1 429 Too Many Requests", "retry-after:  30 ",
                             "Content-Length: 0", "X-Empty:"), method=b"POST")
    assert (parsed.status, parsed.reason) == (429, b"Too Many Requests")
    assert parsed.headers == [(b"retry-after", b"30"), (b"content-length", b"0"),
                              (b"x-empty", b"")]
    assert parse_head(head("HTTP/1.1 200"), method=b"GET").reason == b""


def test_content_codings_are_collected_as_they_came_in_order() -> None:
    parsed = parse_head(head("HTTP/1.1 200 OK", "Content-Encoding: deflate", "Content-Length: 3",
                             "content-encoding:  GZIP "), method=b"POST")
    assert parsed.codings == [b"deflate", b"GZIP"]  # the decoder reads them without case
    assert (b"content-encoding", b"deflate") in parsed.headers  # and they stay in the fields
    assert parse_head(head("HTTP/1.1 200 OK", "Content-Length: 3"), method=b"POST").codings == []


@pytest.mark.parametrize("block", [
    b"garbage\r\n\r\n",
    b"\x16\x03\x01\x02\x00\r\n\r\n",  # a TLS record where HTTP was expected
    head("HTTP/2 200"),
    head("HTTP/1.1 20 OK"),
    head("HTTP/1.1 200 OK", " folded: continuation"),  # obs-fold
    head("HTTP/1.1 200 OK", "Bad Name: x"),
    head("HTTP/1.1 200 OK", "name : x"),
    head("HTTP/1.1 200 OK", "no colon here"),
    head("HTTP/1.1 200 OK", "x-evil: a\x00b"),
    head("HTTP/1.1 200 OK", "Content-Length: 3", "Transfer-Encoding: chunked"),
    head("HTTP/1.1 200 OK", "Content-Length: 3", "Content-Length: 4"),
    head("HTTP/1.1 200 OK", "Content-Length: -1"),
    head("HTTP/1.1 200 OK", "Content-Length: 0x10"),
    head("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"),
    head("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, identity"),
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",  # no blank line
    head("HTTP/1.1 200 OK", "x-big: " + "a" * MAX_HEAD_BYTES),
])
def test_malformed_heads_are_refused(block: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_head(block, method=b"POST")


@pytest.mark.parametrize(("line", "size"), [
    (b"0\r\n", 0), (b"1a\r\n", 26), (b"FF;name=value\r\n", 255), (b"10 \r\n", 16),
])
def test_chunk_sizes(line: bytes, size: int) -> None:
    assert parse_chunk_size(line) == size


@pytest.mark.parametrize("line", [b"\r\n", b"-1\r\n", b"g\r\n", b"1\n", b"1" * 16 + b"\r\n",
                                  b"0x10\r\n"])
def test_malformed_chunk_sizes(line: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_chunk_size(line)


def chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n" + trailer \
        + b"\r\n"


@given(pieces=st.lists(st.binary(max_size=40), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10),
       trailer=st.sampled_from([b"", b"x-checksum: 1\r\n"]))
def test_chunked_decoding_does_not_depend_on_how_the_bytes_arrive(
        pieces: list[bytes], cuts: list[int], trailer: bytes) -> None:
    wire = chunked(pieces, trailer)
    decoder = ChunkedDecoder()
    out = b""
    start = 0
    for cut in sorted({c for c in cuts if c < len(wire)} | {len(wire)}):
        assert not decoder.done
        out += decoder.feed(wire[start:cut])
        start = cut
    assert decoder.done and not decoder.surplus
    assert out == b"".join(pieces)


@given(pieces=st.lists(st.binary(min_size=1, max_size=40), max_size=8),
       extension=st.sampled_from([b"", b";name=value", b" "]))
def test_one_whole_chunk_per_read_is_decoded_as_it_comes(pieces: list[bytes],
                                                          extension: bytes) -> None:
    # How a stream usually arrives: every read is exactly one chunk.
    decoder = ChunkedDecoder()
    for piece in pieces:
        assert decoder.feed(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece)) == piece
    assert not decoder.done
    assert decoder.feed(b"0\r\n\r\n") == b""
    assert decoder.done and not decoder.surplus
    with pytest.raises(MalformedResponse):  # a whole-looking read still has its size checked
        ChunkedDecoder().feed(b"3\r\nabcde\r\n")


def test_bytes_after_the_last_chunk_mark_the_connection_out_of_step() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(chunked([b"hello"]) + b"HTTP/1.1 200 OK\r\n") == b"hello"
    assert decoder.done and decoder.surplus


@pytest.mark.parametrize("wire", [
    b"3\r\nabcd\r\n",          # longer than its size
    b"zz\r\n",                 # not a size
    b"1" * 5000,               # a size line that never ends
])
def test_malformed_chunked_bodies(wire: bytes) -> None:
    with pytest.raises(MalformedResponse):
        ChunkedDecoder().feed(wire)
