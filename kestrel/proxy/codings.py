"""Content codings of upstream answers (RFC 9110 §8.4), undone as the bytes arrive. Pure.

Kestrel offers the upstream `gzip` and `deflate` (`ACCEPT_ENCODING`), which zlib undoes, and
relays the decoded bytes: clients ask for codings of their own (Claude Code asks for br and
zstd) that the proxy could not read usage out of. An answer in a coding that was not offered is
refused rather than relayed as bytes its client cannot read.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

ACCEPT_ENCODING = b"gzip, deflate"


class UndecodableBody(ValueError):
    """The answer's content coding is not one Kestrel offered, or its bytes do not decode."""


class _Zlib:
    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> bytes:
        try:
            return self._inflate.decompress(data)
        except zlib.error as exc:
            raise UndecodableBody(f"the upstream's compressed body is corrupt ({exc})") from None

    def flush(self) -> bytes:
        try:
            return self._inflate.flush()
        except zlib.error as exc:
            raise UndecodableBody(f"the upstream's compressed body is corrupt ({exc})") from None


class _Deflate(_Zlib):
    """`deflate` is meant to be zlib-wrapped (RFC 9110 §8.4.1.2), but some servers send raw
    deflate: the first two bytes tell which (RFC 1950 §2.2: method 8, a multiple of 31)."""

    def __init__(self) -> None:
        super().__init__(zlib.MAX_WBITS)
        self._head: bytes | None = b""  # the first bytes, until there are two to look at

    def decode(self, data: bytes) -> bytes:
        if self._head is not None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return b""
            self._head = None
            if not (data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0):
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        return super().decode(data)

    def flush(self) -> bytes:
        if self._head:
            raise UndecodableBody("the upstream's compressed body is corrupt (one byte)")
        return super().flush()


class Decoder:
    """The codings of one answer, undone in the reverse of the order they were applied."""

    def __init__(self, codings: list[bytes]) -> None:
        self._stages = [_Zlib(zlib.MAX_WBITS | 16) if coding == b"gzip" else _Deflate()
                        for coding in reversed(codings)]

    def decode(self, data: bytes) -> bytes:
        for stage in self._stages:
            data = stage.decode(data)
        return data

    def flush(self) -> bytes:
        """What the decoders still hold once the body has ended."""
        data = b""
        for stage in self._stages:
            data = (stage.decode(data) if data else b"") + stage.flush()
        return data


def content_decoder(values: Iterable[bytes]) -> Decoder | None:
    """The decoder an answer with these Content-Encoding values needs, None for the identity
    coding.

    Raises `UndecodableBody` for a coding Kestrel did not offer.
    """
    codings: list[bytes] = []
    for value in values:
        codings.extend(c for c in (part.strip().lower() for part in value.split(b","))
                       if c and c != b"identity")
    if not codings:
        return None
    unknown = [c for c in codings if c not in (b"gzip", b"x-gzip", b"deflate")]
    if unknown:
        raise UndecodableBody("the upstream answered in a content coding Kestrel did not ask "
                              f"for: {', '.join(c.decode('latin-1') for c in unknown)}")
    return Decoder([b"gzip" if c == b"x-gzip" else c for c in codings])
