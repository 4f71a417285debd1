"""Putting a planned answer on the wire, or breaking off at the point its step names.

Each failure is made the way a real network makes it: a reset is a TCP RST (linger 0), a cut
is a close without the chunked body's last chunk, garbage is bytes that are not HTTP at all.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import h11

from .answers import Answer
from .steps import BREAKS_OFF

READ_SIZE = 65536
# A stream broken "mid-way" breaks this long after its last event, so the events are surely
# read (and relayed) before the break: a break arriving with them could be taken for a failure
# before the first byte, which a proxy may rightly retry elsewhere.
BREAK_PAUSE = 0.05


async def send(conn: h11.Connection, writer: asyncio.StreamWriter, event: h11.Event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def watch_for_close(reader: asyncio.StreamReader, conn: h11.Connection) -> None:
    """Returns when the client closed its side; bytes of a next request are kept for h11."""
    while True:
        data = await reader.read(READ_SIZE)
        if not data:
            return
        conn.receive_data(data)


def reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST rather than an orderly close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:  # linger 0 turns the close into a RST
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def respond(conn: h11.Connection, writer: asyncio.StreamWriter, a: Answer) -> bool:
    """Send `a` as its step says. True: the answer ended properly and the connection may be
    kept alive; False: it must be closed (or already was, by the step)."""
    step = a.step
    if step.delay:
        await asyncio.sleep(step.delay)
    if step.kind == "hang":
        await asyncio.Event().wait()
    if step.kind == "reset":
        reset(writer)
        return False
    if step.kind == "garbage":
        writer.write(b"\x16\x03\x01 this is not HTTP at all \xff\xfe\r\n\r\n")
        await writer.drain()
        return False
    await send(conn, writer, h11.Response(status_code=a.status, headers=a.headers))
    if step.kind == "reset_after_headers":
        reset(writer)
        return False
    if not a.stream:
        if step.kind in BREAKS_OFF:
            writer.write(a.body[: a.half])
            await writer.drain()
            if step.kind == "stall":
                await asyncio.Event().wait()
            if step.kind == "reset_mid":
                reset(writer)
            return False
        await send(conn, writer, h11.Data(data=a.body))
        await send(conn, writer, h11.EndOfMessage())
        return True
    for i, event in enumerate(a.events):
        if i and step.event_interval:
            await asyncio.sleep(step.event_interval)
        size = step.chunk_size or len(event)
        for start in range(0, len(event), size):
            await send(conn, writer, h11.Data(data=event[start : start + size]))
    if step.kind == "stall":
        await asyncio.Event().wait()
    if step.kind in ("reset_mid", "cut"):
        await asyncio.sleep(BREAK_PAUSE)
    if step.kind == "reset_mid":
        reset(writer)
        return False
    if step.kind == "cut":
        return False  # close without the last chunk: the body is visibly incomplete
    await send(conn, writer, h11.EndOfMessage())
    return True
