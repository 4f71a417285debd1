"""Load generator for streams: C concurrent keep-alive connections, each opening one SSE stream
after another until the duration is over, every stream timed and checked.

Run as its own process (stdlib only, so it needs nothing installed):

    python3 bench/sse_client.py --url http://127.0.0.1:8080/v1/messages --kind anthropic \
        --concurrency 100 --duration 10 --deltas 50 [--api-key KEY]

It prints one JSON object: per completed stream the time to first byte and to last byte (µs,
from the moment the request started, connecting included), and counts of streams that were
complete and intact, broken (bad status, cut short, wrong events) or still unfinished when the
hard deadline (duration + grace) came.

"Intact" means, for `anthropic`: the events in Anthropic's order (message_start, ping,
content_block_start, N content_block_delta, content_block_stop, message_delta, message_stop)
and the delta texts "w0 " … "w<N-1> " in order; for `openai`: `data:` chunks whose contents
join to that same text, then `data: [DONE]` last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

_ANTHROPIC_EVENT = re.compile(rb"^event: *([a-z_]+)\r?$", re.M)
_ANTHROPIC_TEXT = re.compile(rb'"text_delta", *"text": *"([^"]*)"')
_OPENAI_DATA = re.compile(rb"^data: *(.*?)\r?$", re.M)
_OPENAI_TEXT = re.compile(rb'"content": *"([^"]*)"')
_TERMINAL_CHUNK = b"\r\n0\r\n\r\n"


def expected_text(deltas: int) -> bytes:
    return "".join(f"w{i} " for i in range(deltas)).encode()


def anthropic_events(deltas: int) -> list[bytes]:
    return [b"message_start", b"ping", b"content_block_start",
            *[b"content_block_delta"] * deltas,
            b"content_block_stop", b"message_delta", b"message_stop"]


def dechunk(body: bytes) -> bytes | None:
    """The payload of a chunked body, or None if the framing is broken."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(body[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            return None
        if size == 0:
            return bytes(out)
        start = eol + 2
        out += body[start:start + size]
        if body[start + size:start + size + 2] != b"\r\n":
            return None
        pos = start + size + 2


def check_stream(kind: str, payload: bytes, deltas: int) -> str | None:
    """None if the stream is complete and intact, else what is wrong with it."""
    if kind == "anthropic":
        events = _ANTHROPIC_EVENT.findall(payload)
        if events != anthropic_events(deltas):
            return f"events: got {len(events)}, last {events[-1:]!r}"
        text = b"".join(_ANTHROPIC_TEXT.findall(payload))
    else:
        data = _OPENAI_DATA.findall(payload)
        if not data or data[-1] != b"[DONE]":
            return "no data: [DONE] at the end"
        text = b"".join(_OPENAI_TEXT.findall(payload))
    if text != expected_text(deltas):
        return f"text: got {len(text)} bytes, want {len(expected_text(deltas))}"
    return None


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one stream at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._head_end = -1
        self._chunked = False
        self._length: int | None = None
        self._first_byte: float | None = None
        self._done: asyncio.Future[tuple[float, bytes, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[tuple[float, bytes, bytes]]:
        """Send a request; the future gives (first byte time, head, body) when it ends."""
        assert self.transport is not None
        self._buf.clear()
        self._head_end = -1
        self._first_byte = None
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._done

    def data_received(self, data: bytes) -> None:
        if self._first_byte is None:
            self._first_byte = time.perf_counter()
        self._buf += data
        if self._head_end < 0:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head_end = end + 4
            head = bytes(self._buf[:end]).lower()
            self._chunked = b"transfer-encoding: chunked" in head
            match = re.search(rb"content-length: *(\d+)", head)
            self._length = int(match.group(1)) if match else None
        body_len = len(self._buf) - self._head_end
        if self._chunked:
            finished = self._buf.endswith(_TERMINAL_CHUNK) or (
                body_len == 5 and self._buf.endswith(b"0\r\n\r\n"))
        else:
            finished = self._length is not None and body_len >= self._length
        if finished:
            self._finish()

    def _finish(self) -> None:
        if self._done is not None and not self._done.done():
            assert self._first_byte is not None
            head = bytes(self._buf[:self._head_end])
            body = bytes(self._buf[self._head_end:])
            self._done.set_result((self._first_byte, head, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._done is not None and not self._done.done():
            if self._head_end >= 0 and not self._chunked and self._length is None:
                self._finish()  # a body delimited by the connection's end
            else:
                self._done.set_exception(ConnectionError("connection closed mid-response"))


@dataclass
class Results:
    ttfb_us: list[int] = field(default_factory=list)
    ttlb_us: list[int] = field(default_factory=list)
    connect_us: list[int] = field(default_factory=list)
    started: int = 0
    intact: int = 0
    broken: int = 0
    unfinished: int = 0
    problems: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {"started": self.started, "intact": self.intact, "broken": self.broken,
                "unfinished": self.unfinished, "ttfb_us": self.ttfb_us, "ttlb_us": self.ttlb_us,
                "connect_us": self.connect_us, "problems": dict(self.problems.most_common(5))}


def build_request(url: str, api_key: str | None) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # The same body suits both surfaces: OpenAI's chat completions and Anthropic's messages.
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = [f"POST {path} HTTP/1.1", f"host: {parts.netloc}", "content-type: application/json",
            "anthropic-version: 2023-06-01", "accept: text/event-stream",
            f"content-length: {len(raw)}"]
    if api_key:
        head.append(f"x-api-key: {api_key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + raw


async def _worker(host: str, port: int, request: bytes, first_start: float,
                  stop_starting: float, results: Results,
                  finished: list[tuple[int, int, bytes, bytes]]) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, first_start - time.perf_counter()))
    conn: _Connection | None = None
    while time.perf_counter() < stop_starting:
        results.started += 1
        started = time.perf_counter()
        try:
            if conn is None or conn.closed:
                _, conn = await loop.create_connection(_Connection, host, port)
                results.connect_us.append(int((time.perf_counter() - started) * 1e6))
            first, head, body = await conn.send(request)
        except (OSError, ConnectionError) as exc:
            results.broken += 1
            results.problems[f"{type(exc).__name__}: {exc}"[:120]] += 1
            conn = None
            await asyncio.sleep(0.05)  # a refused connect must not become a busy loop
            continue
        except asyncio.CancelledError:
            results.unfinished += 1
            if conn is not None and conn.transport is not None:
                conn.transport.abort()
            raise
        ended = time.perf_counter()
        # Checked after the run: checking here would delay the reads of the other streams.
        finished.append((int((first - started) * 1e6), int((ended - started) * 1e6), head, body))
    if conn is not None and conn.transport is not None:
        conn.transport.close()


def _judge(kind: str, deltas: int, finished: list[tuple[int, int, bytes, bytes]],
           results: Results) -> None:
    for ttfb, ttlb, head, body in finished:
        status = head[9:12]
        payload = dechunk(body) if b"transfer-encoding: chunked" in head.lower() else body
        problem = (f"status {status.decode(errors='replace')}" if status != b"200"
                   else "bad chunked framing" if payload is None
                   else check_stream(kind, payload, deltas))
        if problem is not None:
            results.broken += 1
            results.problems[problem] += 1
            continue
        results.intact += 1
        results.ttfb_us.append(ttfb)
        results.ttlb_us.append(ttlb)


async def run(args: argparse.Namespace) -> Results:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(args.url, args.api_key)
    results = Results()
    finished: list[tuple[int, int, bytes, bytes]] = []
    begin = time.perf_counter()
    stop_starting = begin + args.duration
    # Stream i first starts at i/C of the ramp: a steady load, not C streams in lockstep.
    tasks = [asyncio.create_task(_worker(host, port, request,
                                         begin + args.ramp * i / args.concurrency,
                                         stop_starting, results, finished))
             for i in range(args.concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=args.duration + args.grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _judge(args.kind, args.deltas, finished, results)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=("anthropic", "openai"), default="anthropic")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds during which new streams start")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="seconds after the duration for streams under way to end")
    parser.add_argument("--ramp", type=float, default=1.0,
                        help="seconds over which the first streams are spread")
    parser.add_argument("--deltas", type=int, default=50)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    json.dump(results.as_json(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
