"""The values a handler sees and returns (`Request`, `Response`, `Headers`, the HTTP errors),
and the `AccessEntry` the server hands its access log.

This package is a small general-purpose HTTP/1.1 server; nothing here knows about Kestrel.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, NamedTuple

BodyReceiver = Callable[[], Awaitable[bytes | None]]
"""Returns the next piece of the request body, or None once the body is complete."""


class Headers:
    """Case-insensitive, order-keeping, multi-valued header list (names lower-cased, latin-1).

    Never changed once made. Held as bytes, as the fields came off the wire (`raw`): a proxy
    sends most of them on as they are, and Claude Code sends twenty-odd; decoding and encoding
    each again was a tenth of what proxying one of its requests cost. Text is made only for
    what is read: `get` decodes the one value asked for, from a dict of each name's first
    value made at the first lookup (a request is asked for a dozen names); the list of text
    pairs (`items`, iteration) is made the first time it is asked for.
    """

    __slots__ = ("_raw", "_text", "_first")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        """From text, which must be latin-1 like every field on the wire (UnicodeEncodeError
        otherwise)."""
        self._text: list[tuple[str, str]] | None = [(k.lower(), v) for k, v in items]
        self._raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._text]
        self._first: dict[bytes, bytes] | None = None

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """From fields as they came on the wire (h11's `raw_items()`): names are tokens, so
        lower-casing their bytes is lower-casing them."""
        headers = cls.__new__(cls)
        headers._raw = [(k.lower(), v) for k, v in raw]
        headers._text = None
        headers._first = None
        return headers

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """The fields as bytes, names in lower case, values as they came. The list is shared,
        not a copy: never change it."""
        return self._raw

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._first_value(name)
        # latin-1 maps every byte to a character, so decoding cannot fail.
        return default if value is None else value.decode("latin-1")

    def _first_value(self, name: str) -> bytes | None:
        first = self._first
        if first is None:  # reversed: where a name repeats, its first value is the one kept
            first = self._first = dict(reversed(self._raw))
        try:
            # Names are tokens, ASCII only: UTF-8 encodes those as latin-1 does, by the quicker
            # codec, and a name outside ASCII matches no field whichever way it is encoded.
            return first.get(name.lower().encode())
        except UnicodeEncodeError:  # a lone surrogate
            return None

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items() if key == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items())

    def _items(self) -> list[tuple[str, str]]:
        text = self._text
        if text is None:
            text = self._text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw]
        return text

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._first_value(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        # Values are left out on purpose: headers carry credentials.
        return f"Headers({[k for k, _ in self._items()]!r})"


class HTTPError(Exception):
    """An error the server itself can answer; applications may catch and re-render it."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HTTPError):
    status = 400


class NotFound(HTTPError):
    status = 404


class MethodNotAllowed(HTTPError):
    status = 405

    def __init__(self, message: str, allow: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allow = allow


class BodyTooLarge(HTTPError):
    status = 413


class HeadersTooLarge(HTTPError):
    status = 431


class RequestTimeout(HTTPError):
    """The client went quiet in the middle of its request body (the server's body_timeout)."""

    status = 408


class Request:
    """One request as the handler sees it. The body is read lazily, so limits apply as it comes.

    `state` is scratch space for the application (who authenticated, which route matched);
    `path_params` is filled by the router.
    """

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        client: tuple[str, int] | None,
        request_id: str,
        receive: BodyReceiver,
    ) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition("?")
        self.path = path
        self.query = query
        self.headers = headers
        self.client = client
        self.request_id = request_id
        self.path_params: dict[str, str] = {}
        self.state: dict[str, Any] = {}
        self._receive = receive
        self._body: bytes | None = None
        self._streaming = False

    @property
    def client_host(self) -> str:
        return self.client[0] if self.client else "-"

    async def iter_body(self) -> AsyncIterator[bytes]:
        """The body piece by piece as it arrives (with 100-continue sent on first read)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        self._claim_body()
        while (chunk := await self._receive()) is not None:
            yield chunk

    async def body(self) -> bytes:
        """The whole body; raises `BodyTooLarge` past the server's limit, before buffering it."""
        if self._body is None:
            self._claim_body()
            # Straight from the receiver, not through iter_body: an async generator per
            # request costs more than the usual one-piece body it would carry.
            chunks = []
            while (chunk := await self._receive()) is not None:
                chunks.append(chunk)
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    def _claim_body(self) -> None:
        """The body can be read from the connection once."""
        if self._streaming:
            raise RuntimeError("request body already consumed")
        self._streaming = True


@dataclass
class Response:
    """What a handler returns. An async-iterable body is sent chunked and flushed per chunk.

    The server always closes an async-generator body (`aclose()`), whether it ran to the end,
    failed, or the client went away, so the generator's `finally` is the place for cleanup.
    """

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | AsyncIterable[bytes] = b""
    checked_headers: Sequence[tuple[bytes, bytes]] = ()
    """Fields sent ahead of `headers` as they are: for a proxy relaying the fields it parsed
    and checked itself, as strictly as the server checks `headers` (a lower-case token for
    the name; visible characters and obs-text for the value, with spaces and tabs only
    inside it). Never framing (`content-length`, `transfer-encoding`, `connection`), `date`
    or `server`: those are the server's."""


Handler = Callable[[Request], Awaitable[Response]]


class AccessEntry(NamedTuple):
    """What the access log says about one exchange, handed over when it ends.

    A plain tuple, not a log record: the server makes one per request, and whoever writes the
    log decides when and how to format it (a batch at a time, say).
    Never header values or the query string: they carry credentials.
    """

    method: str
    path: str  # without the query string
    status: int  # 499 when the client left before the response ended (nginx's code)
    duration_ms: float
    request_id: str
    client: str | None
    bytes_sent: int


AccessLog = Callable[[AccessEntry], None]
