"""Bursts of concurrent client requests, each judged against the answer the upstream made for it.

A burst sends `count` requests to `POST /v1/messages` at once (every other one with
`"stream": true`), each opening its own conversation, over a connection of its own, with a
client-side deadline on the whole exchange, body included. What came back is then judged
against the fake upstream's records. The verdicts (the fault matrix in `tests/faults/` counts
them):

- **served**: status 200 and the bytes received are exactly an answer the upstream produced
  for this very request. The response's `request-id` (Anthropic's, which Kestrel passes on)
  names a recorded upstream request whose body is byte for byte the body this client sent,
  whose step was a success, and whose answer bytes equal the bytes received: a whole JSON
  message, or a whole SSE stream through `message_stop`, with no transport error.
- **documented error**, one of the two outcomes the README promises:
  - *no account could serve*: Kestrel's own error in Anthropic's shape, 429 `rate_limit_error`
    with an integer `retry-after` of at least 1, or 503 `api_error`; Kestrel made it, so it
    carries no upstream `request-id`;
  - *a stream broken after it started* ("ends for the client as it would from Anthropic"):
    status 200, the `request-id` names this request's own upstream answer, that answer broke
    off mid-way (cut, reset, ended early, stalled, or an error event), the client received a
    non-empty byte prefix of it and never `message_stop` (for an error event: all of it, the
    event included, since it must reach the client), and the stream then ended, cleanly or
    with the connection closed.
- **wrong**: anything else. Another request's answer, bytes the upstream never sent for this
  one, an upstream failure relayed although the request could have moved to another account
  (a 429 or 5xx, a body that is not JSON, a non-streamed answer cut short), a response without
  any `request-id` that is not a documented error, a connection closed with no response.
- **hung**: no end within the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

from fake_upstream import FakeAnthropic, RecordedRequest
from support.stack import MODEL

# Far beyond any wait the faults cause (a read timeout of a few seconds, then a retry): a
# request still going at this point is stuck, not slow.
DEADLINE_SECONDS = 20.0

# Upstream steps that break an answer after its first bytes went out.
MID_STREAM_STEPS = frozenset({"cut", "reset_mid", "end_early", "stall", "stream_error"})


class Verdict(enum.StrEnum):
    SERVED = "served"
    DOCUMENTED = "documented error"
    WRONG = "wrong"
    HUNG = "hung"


@dataclass
class Sent:
    """One client request and everything that came back for it."""

    index: int
    stream: bool
    body: bytes
    started: float = 0.0
    ended: float = 0.0
    """Wall-clock times (`time.time()`), to line up with cooldowns and log rows."""
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    received: bytes = b""
    error: str | None = None
    """The transport error that ended the exchange, if one did."""
    hung: bool = False


def new_batch(label: str, count: int) -> list[Sent]:
    """`count` requests, every other one streaming; the text makes each a new conversation."""
    def body(n: int) -> bytes:
        return json.dumps({"model": MODEL, "max_tokens": 64, "stream": n % 2 == 1,
                           "messages": [{"role": "user", "content": f"{label} #{n}"}]}).encode()
    return [Sent(n, n % 2 == 1, body(n)) for n in range(count)]


async def fire(url: str, key: str, batch: Sequence[Sent], *,
               deadline: float = DEADLINE_SECONDS, concurrency: int | None = None,
               on_end: Callable[[Sent], None] | None = None) -> None:
    """Send `batch` at once (at most `concurrency` at a time), filling in each `Sent`.

    A bare h11 client, one connection per request: httpx's pool costs O(connections) per
    request, which at 200 connections made the test process, not Kestrel, the bottleneck.
    """
    where = urlsplit(url)
    assert where.hostname is not None and where.port is not None, url
    gate = asyncio.Semaphore(concurrency or len(batch))
    headers = [("host", where.netloc), ("x-api-key", key), ("anthropic-version", "2023-06-01"),
               ("content-type", "application/json"), ("connection", "close")]

    async def one(sent: Sent) -> None:
        async with gate:
            sent.started = time.time()
            received = bytearray()
            try:
                async with asyncio.timeout(deadline):
                    await _exchange(where.hostname or "", where.port or 0, headers, sent,
                                    received)
            except TimeoutError:
                sent.hung = True
            except (OSError, h11.ProtocolError) as exc:
                sent.error = f"{type(exc).__name__}: {exc}"
            sent.received = bytes(received)
            sent.ended = time.time()
            if on_end is not None:
                on_end(sent)

    await asyncio.gather(*(one(sent) for sent in batch))


async def _exchange(host: str, port: int, headers: list[tuple[str, str]], sent: Sent,
                    received: bytearray) -> None:
    """One request on a fresh connection; raises on a reset or a body that ends too soon."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(
            method="POST", target="/v1/messages",
            headers=[*headers, ("content-length", str(len(sent.body)))])) or b"")
        writer.write(conn.send(h11.Data(data=sent.body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                # b"" at EOF: h11 then raises if the body was not complete
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                sent.status = event.status_code
                sent.headers = {k.decode().lower(): v.decode("latin-1")
                                for k, v in event.headers}
            elif isinstance(event, h11.Data):
                received += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def judge(sent: Sent, records: Mapping[str, RecordedRequest]) -> tuple[Verdict, str]:
    """The verdict on one request (see the module docstring) and why."""
    if sent.hung:
        return Verdict.HUNG, "no end within the deadline"
    if sent.status is None:
        return Verdict.WRONG, f"no response: {sent.error}"
    upstream_id = sent.headers.get("request-id")
    if upstream_id is None:
        return _judge_own_error(sent)
    record = records.get(upstream_id)
    if record is None:
        return Verdict.WRONG, "its request-id names no upstream answer"
    if record.body != sent.body:
        return Verdict.WRONG, "it got the answer made for another request"
    if sent.status != record.status:
        return Verdict.WRONG, f"status {sent.status} where the upstream said {record.status}"
    if record.step == "success":
        if sent.error is not None:
            return Verdict.WRONG, f"a good answer broke on the way: {sent.error}"
        if sent.received != record.answer:
            return Verdict.WRONG, "its body is not the upstream's answer"
        return Verdict.SERVED, "served"
    if record.step in MID_STREAM_STEPS and sent.stream and sent.status == 200:
        if not sent.received or not record.answer.startswith(sent.received):
            return Verdict.WRONG, "a broken stream that is not a prefix of its upstream answer"
        if b"event: message_stop" in sent.received:
            return Verdict.WRONG, "a broken stream that claims to be complete"
        if record.step == "stream_error" and sent.received != record.answer:
            return Verdict.WRONG, "the upstream's error event did not reach the client"
        return Verdict.DOCUMENTED, f"stream broken mid-way ({record.step})"
    return Verdict.WRONG, f"the upstream's {record.step!r} answer was relayed"


def _judge_own_error(sent: Sent) -> tuple[Verdict, str]:
    """A response Kestrel made itself: only the no-account errors are documented."""
    try:
        payload = json.loads(sent.received)
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if (sent.error is not None or not isinstance(error, dict) or payload.get("type") != "error"
            or not isinstance(error.get("message"), str)):
        return Verdict.WRONG, f"status {sent.status}: not an error in Anthropic's shape"
    if sent.status == 429 and error.get("type") == "rate_limit_error":
        retry_after = sent.headers.get("retry-after", "")
        if retry_after.isdigit() and int(retry_after) >= 1:
            return Verdict.DOCUMENTED, "429 every account cooling down"
        return Verdict.WRONG, f"429 with retry-after {retry_after!r}"
    if sent.status == 503 and error.get("type") == "api_error":
        return Verdict.DOCUMENTED, "503 no account can serve"
    return Verdict.WRONG, f"status {sent.status} {error.get('type')!r} from Kestrel itself"


@dataclass
class Tally:
    """The verdicts on one burst, in the shape of a fault matrix row."""

    sent: list[Sent]
    verdicts: list[tuple[Verdict, str]]

    def count(self, verdict: Verdict) -> int:
        return sum(1 for v, _ in self.verdicts if v is verdict)

    @property
    def served(self) -> int:
        return self.count(Verdict.SERVED)

    @property
    def documented(self) -> int:
        return self.count(Verdict.DOCUMENTED)

    @property
    def wrong(self) -> int:
        return self.count(Verdict.WRONG)

    @property
    def hung(self) -> int:
        return self.count(Verdict.HUNG)

    def of(self, verdict: Verdict, *, stream: bool | None = None) -> list[Sent]:
        """The requests judged `verdict` (only the streaming or non-streaming ones, if asked)."""
        return [s for s, (v, _) in zip(self.sent, self.verdicts, strict=True)
                if v is verdict and (stream is None or s.stream is stream)]

    def reasons(self) -> Counter[str]:
        return Counter(f"{v}: {why}" for v, why in self.verdicts)

    def row(self, fault: str) -> list[object]:
        return [fault, len(self.sent), self.served, self.documented, self.wrong, self.hung]


def tally(sent: Iterable[Sent], up: FakeAnthropic) -> Tally:
    records = {r.request_id: r for r in up.requests}
    batch = list(sent)
    return Tally(batch, [judge(s, records) for s in batch])


def burst(url: str, key: str, up: FakeAnthropic, label: str, count: int = 200) -> Tally:
    """Send a burst (see `new_batch`) and judge it: the whole cycle, for synchronous tests."""
    batch = new_batch(label, count)
    asyncio.run(fire(url, key, batch))
    return tally(batch, up)
