"""Content codings of upstream answers, undone piece by piece as they arrive."""

from __future__ import annotations

import gzip
import zlib

import pytest

from kestrel.proxy.codings import UndecodableBody, content_decoder

TEXT = b'event: content_block_delta\ndata: {"delta":{"text":"hello"}}\n\n' * 40


def decode_in_pieces(values: list[bytes], body: bytes, size: int) -> bytes:
    decoder = content_decoder(values)
    assert decoder is not None
    out = [decoder.decode(body[i:i + size]) for i in range(0, len(body), size)]
    return b"".join(out) + decoder.flush()


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize(("coding", "pack"), [
    (b"gzip", gzip.compress),
    (b"x-gzip", gzip.compress),
    (b"deflate", zlib.compress),  # zlib-wrapped, as RFC 9110 says
    (b"deflate", raw_deflate),  # what some servers send instead
])
def test_each_offered_coding_is_undone_whatever_the_pieces(coding: bytes, pack: object,
                                                           size: int) -> None:
    assert callable(pack)
    body = pack(TEXT)
    # The coding in any case.
    assert decode_in_pieces([coding.upper()], body, size) == TEXT


def test_stacked_codings_are_undone_last_applied_first() -> None:
    body = gzip.compress(zlib.compress(TEXT))
    # Two fields, or one list: the same codings in the same order.
    assert decode_in_pieces([b"deflate", b"gzip"], body, 13) == TEXT
    assert decode_in_pieces([b"deflate, gzip"], body, 13) == TEXT


@pytest.mark.parametrize("values", [[], [b"identity"], [b""], [b" , identity"]])
def test_an_answer_without_a_coding_needs_no_decoder(values: list[bytes]) -> None:
    assert content_decoder(values) is None


@pytest.mark.parametrize("coding", [b"br", b"zstd", b"gzip, compress"])
def test_a_coding_that_was_not_offered_is_refused_by_name(coding: bytes) -> None:
    with pytest.raises(UndecodableBody, match=coding.split(b",")[-1].strip().decode()):
        content_decoder([coding])


def test_corrupt_bytes_are_refused_not_relayed() -> None:
    decoder = content_decoder([b"gzip"])
    assert decoder is not None
    with pytest.raises(UndecodableBody, match="corrupt"):
        decoder.decode(b"\x1f\x8b\x08\x00 this is not deflate data at all")
