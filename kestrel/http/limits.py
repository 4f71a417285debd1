"""The numbers that bound what one client can make the server hold or wait for.

Every limit is a field of `ServerLimits` so an application (and a test) can tighten it; the
defaults say where they come from. The few module constants below are not worth a knob.
"""

from __future__ import annotations

from dataclasses import dataclass

# After a final response that leaves request bytes unread (413 before the body, 400/431 on a
# broken request), we half-close and keep reading for a moment before closing: a client still
# busy sending its body would otherwise get a TCP reset instead of our answer ("lingering
# close", Apache and nginx do the same; nginx lingers up to 5 s between reads, we need less
# because we only wait for bytes already in flight).
LINGER_SECONDS = 1.0
LINGER_MAX_BYTES = 4 * 1024 * 1024

# Unread bytes a connection keeps from its socket (a pipelined request while a response is
# being written, a body arriving faster than the handler reads it), in header limits. Past
# this it stops reading, and the kernel's buffers push back on the client; the cap only has
# to hold a request head, so it is tied to the header limit.
PIPELINE_BUFFER_FACTOR = 2


@dataclass(frozen=True)
class ServerLimits:
    """Limits and deadlines per connection. Defaults suit an API proxy facing the internet."""

    # Request line + headers. nginx's large_client_header_buffers allows 4 x 8 KiB, Apache's
    # LimitRequestFieldSize 8 KiB per line; agents send long bearer tokens and many
    # `anthropic-*` headers, so we allow 64 KiB in all. Over it: 431 and close.
    max_header_bytes: int = 64 * 1024
    # Request body. Prompts with images and long conversations reach a few MiB; Anthropic's
    # own request limit is 32 MB, so a bigger body could only be refused upstream anyway.
    # Over it, reading the body raises `BodyTooLarge` (at once when Content-Length says so,
    # before any byte or `100 Continue`); unless the handler renders it, the answer is a 413.
    # Either way the connection is closed.
    max_body_bytes: int = 32 * 1024 * 1024
    # Whole header block, from its first byte (or from accept, for a connection's first
    # request). nginx's client_header_timeout is 60 s; 10 s is plenty for an honest client and
    # short enough to shed slowloris connections.
    header_timeout: float = 10.0
    # Longest silence between two pieces of a request body (nginx client_body_timeout: 60 s).
    body_timeout: float = 30.0
    # Idle keep-alive connection (nginx keepalive_timeout default: 75 s).
    keepalive_timeout: float = 75.0
    # nginx's keepalive_requests was raised to 1000 in 1.19.10; we allow more because agent
    # clients keep one connection for a whole session. The last response says `close`.
    max_requests_per_connection: int = 10_000
    # Unread request body a handler left behind (it answered without reading): drained up to
    # this so the connection can be reused, else the connection is closed.
    drain_limit_bytes: int = 1024 * 1024
    # How long shutdown waits for in-flight requests and streams before cutting them.
    shutdown_grace: float = 30.0
    # How long shutdown keeps an idle keep-alive connection open. A client in the middle of a
    # burst sends its next request on such a connection within milliseconds of the last
    # answer; closing at once would reset that request in flight. Within this second it is
    # answered with `Connection: close` instead. A connection idle for longer is one its
    # client has parked, and clients (httpx, urllib3) check a parked connection for EOF before
    # they reuse it. Zero closes idle connections at once.
    shutdown_idle_linger: float = 1.0
    # Longest wait for a client to take written bytes (a reader that stopped reading would
    # otherwise hold the response, and the upstream stream behind it, forever).
    write_timeout: float = 60.0
