"""Test kit for the HTTP server: a real `Server` on 127.0.0.1, raw HTTP over real sockets.

The raw client side (`request`, `Client`, `read_response`...) lives in `support.rawhttp`,
shared with the tests that attack a real Kestrel process; it is re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

from kestrel.http import AccessLog, Handler, Request, Response, Server, ServerLimits

from support.rawhttp import (
    TEST_DEADLINE,
    Client,
    RawResponse,
    chunked,
    read_response,
    request,
    run,
)

__all__ = [
    "FAST", "TEST_DEADLINE", "Client", "ListHandler", "RawResponse", "captured", "chunked",
    "echo", "read_response", "request", "run", "serving",
]

# Tight deadlines keep the suite fast; tests that exercise one of them shrink it further.
FAST = ServerLimits(
    header_timeout=2.0,
    body_timeout=2.0,
    keepalive_timeout=5.0,
    shutdown_grace=2.0,
)


@asynccontextmanager
async def serving(
    handler: Handler,
    *,
    access_log: AccessLog | None = None,
    server_header: str = "kestrel-test",
    **limits: Any,
) -> AsyncIterator[Server]:
    server = Server(handler, limits=replace(FAST, **limits), access_log=access_log,
                    server_header=server_header)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.shutdown()


async def echo(request: Request) -> Response:
    """Answers with what it got: the body, and what it saw in headers the tests care about."""
    body = await request.body()
    return Response(200, [("content-type", "application/octet-stream"),
                          ("x-seen-method", request.method),
                          ("x-seen-request-id", request.request_id)], body)


class ListHandler(logging.Handler):
    """Collects log records for assertions."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def captured(name: str) -> Iterator[ListHandler]:
    logger = logging.getLogger(name)
    handler = ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
