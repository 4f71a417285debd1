"""The body of a streamed answer, apart from the forwarder that opens it: once the first bytes
went out, nothing can move to another account, and all that is left is relaying, reading usage
on the side, and recording the end (complete, cut, or the client gone) exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from kestrel.domain import Account, Attempt
from kestrel.proxy.transport import UpstreamResponse
from kestrel.proxy.usage import StreamUsageTracker

if TYPE_CHECKING:
    from kestrel.proxy.forwarder import Call, Forwarder


class StreamRelay:
    """The body of a streamed answer: upstream chunks relayed as they come, usage read aside.

    A class rather than an async generator because the end must be recorded even when the
    server closes the body before ever iterating it (client gone right after the headers):
    `aclose()` on a generator that never started skips its `finally`.
    """

    def __init__(self, forwarder: Forwarder, call: Call, account: Account,
                 response: UpstreamResponse, first: bytes, chunks: AsyncIterator[bytes],
                 attempts: list[Attempt], secrets: tuple[bytes, ...]) -> None:
        self._secrets = secrets  # an error event may quote the credential, as error bodies may
        self._forwarder = forwarder
        self._call = call
        self._account = account
        self._response = response
        self._pending: bytes | None = first
        self._chunks = chunks
        self._attempts = attempts
        self._tracker = StreamUsageTracker()
        self._ttfb_ms = forwarder.elapsed_ms(call.received)
        self._finished = False
        forwarder.active_streams += 1

    def __aiter__(self) -> StreamRelay:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        if self._pending is not None:
            chunk, self._pending = self._pending, None
        else:
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                await self._finish(self._response.status, None)
                raise
            except httpx.HTTPError:
                await self._finish(502, "upstream_disconnected")
                raise
            except asyncio.CancelledError:
                await self._finish(499, "client_disconnected")
                raise
        chunk = scrub(chunk, self._secrets)
        self._tracker.feed(chunk)
        return chunk

    async def aclose(self) -> None:
        """Closed before the end: the client went away. Closing the upstream response stops
        the generation, so no more tokens are paid for on nobody's behalf."""
        await self._finish(499, "client_disconnected")

    async def _finish(self, status: int, error_type: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self._forwarder.active_streams -= 1
        # A client that read an error event hangs up at once, and its disconnect cancels this
        # task, perhaps while the upstream response closes: the account's judgement and the
        # log row must not be cancelled with it.
        await asyncio.shield(self._close_and_record(status, error_type))

    async def _close_and_record(self, status: int, error_type: str | None) -> None:
        await self._response.aclose()
        await self._forwarder.finish_stream(self._call, self._account, self._tracker.summary(),
                                            status, error_type, self._attempts, self._ttfb_ms)


def scrub(body: bytes, secrets: tuple[bytes, ...]) -> bytes:
    """`body` with every credential it quotes replaced (error bodies and error events may)."""
    for secret in secrets:
        body = body.replace(secret, b"[redacted]")  # the same object when it quotes none
    return body
