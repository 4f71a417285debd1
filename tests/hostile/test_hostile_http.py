"""The HTTP layer of a real Kestrel process under attack: a corpus of known smuggling and parser
tricks with the exact answer each deserves, then Hypothesis-generated and mutated requests.

Every case runs on its own connection (`support.hostile.attack`): the server must answer with
well-formed responses only, never a 500, let go of the connection once the client is done,
and stay alive and serving: a valid request on a new connection is answered right after.

The server's header, body and keep-alive timeouts (10 s, 30 s, 75 s) are not settings of the
process (serve.py passes only the body limit and the shutdown grace), so no case waits for
them: a case ends with the client's EOF, which must end any state the connection is in at
once. The header timeout itself is exercised by the slow-loris test.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.figures import report
from support.hostile import Tally, access_paths, attack, no_errors_logged, sync_logs
from support.rawhttp import Exchange, chunked, run
from support.stack import Stack, message_body, running_stack

# Small enough that the oversized cases stay cheap, large enough for every valid body here.
MAX_BODY = 256 * 1024
KEY = "{KEY}"  # replaced by the stack's client key when a case is sent
SMUGGLED = "SMUGGLED"
# Corpus cases run concurrently, so this only needs to outlast one answer under load.
CORPUS_QUIET = 1.0
# Fuzz cases run one after the other: a short silence ends each. A response still being made
# when the client half-closes is cancelled (the client left), which the checks allow.
FUZZ_QUIET = 0.05
FUZZ_EXAMPLES = 240


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("hostile-http")
    with running_stack(workdir, accounts=("a",), env={"MAX_BODY_BYTES": str(MAX_BODY)}) as s:
        yield s


def smuggled(case: str) -> bytes:
    """A complete request hidden where only body bytes belong: it must never be answered."""
    return f"GET /{SMUGGLED}-{case} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def head(lines: list[str], method: str = "POST", target: str = "/v1/messages",
         version: str = "HTTP/1.1", eol: str = "\r\n") -> bytes:
    """A request head with the client key; `lines` are sent exactly as given."""
    fixed = ["Host: kestrel", f"x-api-key: {KEY}", "anthropic-version: 2023-06-01",
             "content-type: application/json"]
    return (eol.join([f"{method} {target} {version}", *fixed, *lines]) + eol + eol).encode(
        "latin-1")


def body(case: str) -> bytes:
    return json.dumps(message_body(f"hostile case {case}")).encode()


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    statuses: tuple[tuple[int, ...], ...] | None
    """The acceptable sequences of statuses on the socket; None: any (survival only)."""
    closes: bool | None
    """The server closes the connection by itself after answering (else it waits for more)."""
    check: Callable[[Stack, Exchange], None] | None = None


def one_of(*statuses: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """The status sequences a case may end with (RFC 9112 sometimes allows two answers)."""
    return statuses


def forwarded_header(case: str, name: str, value: str) -> Callable[[Stack, Exchange], None]:
    """Answered, and the header went upstream as exactly one `value`; or refused, and nothing
    went upstream."""
    def check(stack: Stack, result: Exchange) -> None:
        seen = [r for r in stack.up.requests if f"hostile case {case}".encode() in r.body]
        if result.statuses != [200]:
            assert seen == [], "a refused request went upstream"
            return
        assert len(seen) == 1, seen
        values = [v for n, v in seen[0].headers if n == name]
        assert values == [value], values
    return check


def forwarded_body(case: str) -> Callable[[Stack, Exchange], None]:
    """The body went upstream once, byte for byte: framed the way the client meant it."""
    def check(stack: Stack, result: Exchange) -> None:
        seen = [r for r in stack.up.requests if f"hostile case {case}".encode() in r.body]
        assert [r.body for r in seen] == [body(case)]
    return check


def corpus() -> list[Case]:
    """Known attacks on HTTP/1.1 parsers, each with the answer RFC 9112 asks for."""
    ok, bad = (200,), (400,)
    cases: list[Case] = []

    def add(name: str, data: bytes, statuses: tuple[tuple[int, ...], ...] | None,
            closes: bool | None, check: Callable[[Stack, Exchange], None] | None = None) -> None:
        cases.append(Case(name, data, statuses, closes, check))

    # -- two framings: the classic smuggling shapes (RFC 9112 §6.3) --------------------------
    b = body("cl-cl")
    add("cl-cl-conflict", head([f"Content-Length: {len(b)}", f"Content-Length: {len(b) + 1}"])
        + b + b"x", one_of(bad), True)
    add("cl-list-conflict", head([f"Content-Length: {len(b)}, {len(b) + 1}"]) + b + b"x",
        one_of(bad), True)
    b = body("cl-same")
    add("cl-duplicate-same", head([f"Content-Length: {len(b)}"] * 2) + b, one_of(ok), False,
        forwarded_body("cl-same"))
    for name, lines in (
        ("te-cl", ["Transfer-Encoding: chunked", "Content-Length: 4"]),
        ("cl-te", ["Content-Length: 4", "Transfer-Encoding: chunked"]),
        ("te-cl-http10", ["Transfer-Encoding: chunked", "Content-Length: 4"]),
    ):
        version = "HTTP/1.0" if name.endswith("http10") else "HTTP/1.1"
        add(name, head(lines, version=version) + b"0\r\n\r\n" + smuggled(name), one_of(bad), True)
    for name, lines in (
        ("te-twice", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"]),
        ("te-list", ["Transfer-Encoding: chunked, chunked"]),
        ("te-gzip-chunked", ["Transfer-Encoding: gzip, chunked"]),
        ("te-identity", ["Transfer-Encoding: identity", "Content-Length: 5"]),
        ("te-xchunked", ["Transfer-Encoding: xchunked"]),
    ):
        # Unknown or repeated codings: 501 (RFC 9112 §6.1), never a guess at the framing.
        add(name, head(lines) + b"0\r\n\r\n" + smuggled(name), one_of((501,)), True)
    for name, line in (("te-space-before-colon", "Transfer-Encoding : chunked"),
                       ("te-vertical-tab", "Transfer-Encoding:\x0bchunked")):
        add(name, head([line]) + b"0\r\n\r\n" + smuggled(name), one_of(bad), True)
    # Not a framing header at all: the request has no body, and what follows is the next
    # request, "0" — malformed, so the smuggled one behind it is never reached.
    add("te-underscore", head(["Transfer_Encoding: chunked"]) + b"0\r\n\r\n"
        + smuggled("te-underscore"), one_of((400, 400)), True)
    b = body("te-upper")
    add("te-uppercase", head(["TRANSFER-ENCODING: CHUNKED"]) + chunked(b), one_of(ok), False,
        forwarded_body("te-upper"))
    add("chunk-data-holds-request", head(["Transfer-Encoding: chunked"])
        + chunked(smuggled("chunk-data")), one_of(bad), False)

    # -- obs-fold (RFC 9112 §5.2: reject with 400, or replace each fold with a space) -------
    b = body("fold")
    add("obs-fold-value", head([f"Content-Length: {len(b)}", "anthropic-beta: fold-a",
                                " fold-b"]) + b, one_of(bad, ok), None,
        forwarded_header("fold", "anthropic-beta", "fold-a fold-b"))
    add("obs-fold-first-line", b"GET /health HTTP/1.1\r\n Host: x\r\n\r\n", one_of(bad), True)
    add("obs-fold-into-content-length", head(["Content-Length: 0", " Transfer-Encoding: chunked"])
        + b"0\r\n\r\n" + smuggled("fold-cl"), one_of(bad), True)
    add("obs-fold-into-transfer-encoding", head(["Transfer-Encoding: chunked", " , identity"])
        + b"0\r\n\r\n" + smuggled("fold-te"), one_of(bad, (501,)), True)

    # -- NUL, CR and LF where they do not belong -----------------------------------------------
    for name, data in (
        ("nul-in-value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("nul-in-name", b"GET /health HTTP/1.1\r\nHost: x\r\nX-\x00A: b\r\n\r\n"),
        ("nul-in-target", b"GET /hea\x00lth HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("nul-in-method", b"G\x00T /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("bare-cr-line-end", b"GET /health HTTP/1.1\rHost: x\r\n\r\n"),
        ("cr-in-value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"),
        ("crlf-in-target", b"GET /health\r\nX-A: b HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("space-in-name", b"GET /health HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n"),
        ("no-colon", b"GET /health HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"),
        ("http09", b"GET /health\r\n\r\n"),
        ("no-host", b"GET /health HTTP/1.1\r\n\r\n"),
        ("two-hosts", b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ):
        add(name, data, one_of(bad), True)
    # obs-text (bytes 0x80-0xFF) is allowed in a field value (RFC 9110 §5.5): passed on as
    # the same bytes, or refused; a value that cannot be forwarded is no server error.
    b = body("obs-text")
    add("obs-text-in-header", head([f"Content-Length: {len(b)}", "x-client-title: caf\xe9"])
        + b, one_of(ok, bad), None, forwarded_header("obs-text", "x-client-title", "caf\xe9"))
    # A bare LF as line end is allowed (RFC 9112 §2.2); refusing it would be fine too.
    add("lf-line-ends", b"GET /health HTTP/1.1\nHost: x\n\n", one_of(ok, bad), None)

    # -- chunk sizes and extensions ------------------------------------------------------------
    add("chunk-size-2^80", head(["Transfer-Encoding: chunked"]) + b"f" * 20 + b"\r\n"
        + b"z" * (MAX_BODY + 64 * 1024), one_of((413,)), True)
    for name, size_line in (("chunk-size-21-hex-digits", b"1" + b"0" * 20),
                            ("chunk-size-negative", b"-1"), ("chunk-size-0x", b"0x5"),
                            ("chunk-size-empty", b"")):
        add(name, head(["Transfer-Encoding: chunked"]) + size_line + b"\r\nhello\r\n0\r\n\r\n"
            + smuggled(name), one_of(bad), True)
    add("chunk-data-overrun", head(["Transfer-Encoding: chunked"]) + b"5\r\nhello, world\r\n"
        b"0\r\n\r\n" + smuggled("overrun"), one_of(bad), True)
    add("chunk-extension-endless", head(["Transfer-Encoding: chunked"]) + b"5;ext="
        + b"e" * (MAX_BODY + 64 * 1024), one_of(bad, (413,), (431,)), True)
    b = body("trailers")
    add("chunk-trailers", head(["Transfer-Encoding: chunked"]) + chunked(b)[:-2]
        + b"Content-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n", one_of(ok), False,
        forwarded_body("trailers"))
    add("chunked-never-ends", head(["Transfer-Encoding: chunked"]) + b"5\r\nhello\r\n",
        one_of(bad), False)

    # -- lengths -------------------------------------------------------------------------------
    add("cl-over-limit", head([f"Content-Length: {MAX_BODY + 1}", "Expect: 100-continue"]),
        one_of((413,)), True)
    add("cl-20-digits", head(["Content-Length: 99999999999999999999"]), one_of((413,)), True)
    for name, value in (("cl-21-digits", "1" + "0" * 20), ("cl-plus", "+5"), ("cl-minus", "-5"),
                        ("cl-hex", "0x5"), ("cl-exponent", "5e0"), ("cl-two-numbers", "5 5")):
        add(name, head([f"Content-Length: {value}"]) + b"hello", one_of(bad), True)
    add("cl-short-body-never-ends", head(["Content-Length: 100"]) + b"{}", one_of(bad), False)

    # -- heads too large -----------------------------------------------------------------------
    add("header-70k", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 70_000
        + b"\r\n\r\n", one_of((431,)), True)
    add("headers-20000", b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 20_000
        + b"\r\n", one_of((431,)), True)
    add("target-70k", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        one_of((431,), (414,), bad), True)

    # -- bodies the handler never reads must be skipped, never parsed as requests -----------
    hidden = smuggled("get-body")
    add("get-with-body", b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
        % (len(hidden), hidden), one_of(ok), False)
    hidden = smuggled("unauthenticated-body")
    add("unauthenticated-post-with-body", b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(hidden), hidden), one_of((401,)), None)
    hidden = smuggled("405-body")
    add("wrong-method-with-body", b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
        b"\r\n\r\n%s" % (len(hidden), hidden), one_of((405,)), None)
    hidden = smuggled("expect-refused")
    # Refused without `100 Continue`: the body the client sent anyway is skipped as a body
    # (kept-alive when it came with the head, else closed: either is sound), never parsed.
    add("expect-100-refused-body-sent-anyway", b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n%s" % (len(hidden), hidden),
        one_of((401,)), None)
    add("connection-close-then-more", b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close"
        b"\r\n\r\n" + smuggled("after-close"), one_of(ok), True)

    # -- pipelining ------------------------------------------------------------------------------
    add("pipelined-garbage", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\xffgarbage\r\n\r\n",
        one_of((200, 400)), True)
    add("pipelined-100", b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 100, one_of(ok * 100),
        False)
    # HEAD gets the headers of GET and no body byte, or the next response would be garbled.
    add("pipelined-head-then-get", b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", one_of((200, 200)), False)
    add("pipelined-after-invalid-json", head(["Content-Length: 5"]) + b'{"a":'
        + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", one_of((400, 200)), False)

    # -- request lines: refused or answered, never a crash ----------------------------------
    add("connect", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
        one_of((501,)), True)
    for name, data in (
        ("absolute-form", b"GET http://evil.example/health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("version-2.0", b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n"),
        ("version-1.10", b"GET /health HTTP/1.10\r\nHost: x\r\n\r\n"),
        ("lowercase-method", b"get /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("long-method", b"X" * 5000 + b" /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("h2c-upgrade", b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings"
         b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
        ("websocket-upgrade", b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
         b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         b"Sec-WebSocket-Version: 13\r\n\r\n\x81\x85garbage"),
        ("only-crlf", b"\r\n" * 1000),
        ("binary-noise", bytes(range(256)) * 4),
    ):
        add(name, data, None, None)
    return cases


def with_key(data: bytes, stack: Stack) -> bytes:
    """Cases are built before the stack exists; its client key goes in as they are sent."""
    return data.replace(KEY.encode(), stack.key.encode())


def test_attack_corpus(stack: Stack) -> None:
    """Each known attack gets exactly its answer; smuggled requests are never answered."""
    cases = corpus()

    async def main() -> list[Exchange]:
        return list(await asyncio.gather(*(attack(stack.kestrel, with_key(c.data, stack),
                                                  quiet=CORPUS_QUIET) for c in cases)))

    with no_errors_logged(stack.kestrel):
        results = run(main(), deadline=60)
        tally = Tally()
        for result in results:
            tally.add(result)
        report_tally("attack corpus", tally, alive=True)
        failures = [f"{case.name}: {problem}" for case, result in zip(cases, results, strict=True)
                    if (problem := judge(stack, case, result))]
        assert not failures, "\n".join(failures)
        sync_logs(stack.kestrel)
        answered = [p for p in access_paths(stack.kestrel) if SMUGGLED in p]
        forwarded = [r.path for r in stack.up.requests if SMUGGLED in r.path]
        assert answered == [] and forwarded == [], f"smuggled requests answered: {answered}"


def judge(stack: Stack, case: Case, result: Exchange) -> str:
    """What is wrong with the server's answer to one case (empty if nothing); reports it."""
    shown = " ".join(map(str, result.statuses[:3]))
    if len(result.statuses) > 3:
        shown += f" (x{len(result.statuses)})"
    report("HTTP attack corpus", ("case", "statuses", "server closed", "released"),
           (case.name, shown, "yes" if result.closed_by_server else "no",
            "yes" if result.released else "NO"))
    problems = []
    if not result.released:
        problems.append("the server kept the connection after the client's EOF")
    if 500 in result.statuses:
        problems.append("a 500")
    if case.statuses is not None and tuple(result.statuses) not in case.statuses:
        problems.append(f"statuses {result.statuses}, expected one of {case.statuses}")
    if case.closes is not None and result.closed_by_server != case.closes:
        problems.append("the server closed the connection" if result.closed_by_server
                        else "the server did not close the connection")
    if case.check is not None:
        try:
            case.check(stack, result)
        except AssertionError as exc:
            problems.append(f"check: {exc}")
    return "; ".join(problems)


def report_tally(part: str, tally: Tally, *, alive: bool) -> None:
    report("HTTP fuzzing", ("part", "cases", "server closed", "released after client EOF",
                            "hung", "500s", "alive and serving after each", "statuses"),
           (part, tally.cases, tally.closed_by_server, tally.released_after_eof, tally.hung,
            tally.server_errors(), "yes" if alive else "NO", tally.common_statuses()))


# -- Hypothesis: requests built from parts, and valid requests mutated byte by byte ----------

# Four in five, whatever Hypothesis' own bias towards the first or smallest choice.
USUALLY = st.sampled_from([True, True, True, True, False])


def mostly(usual: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`usual` four times in five: requests broken everywhere at once only test the first
    check; mostly-valid ones reach framing, bodies, routing and pipelining."""
    return USUALLY.flatmap(lambda usual_one: usual if usual_one else odd)


TEXT = st.text(st.characters(max_codepoint=255), max_size=12)
METHODS = mostly(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]),
                 st.sampled_from(["CONNECT", "get", "PRI", "G\x00T", ""]) | TEXT)
TARGETS = mostly(st.sampled_from(["/health", "/api/hello", "/v1/messages",
                                  "/v1/messages/count_tokens", "/v1/chat/completions",
                                  "/v1/models", "/admin/accounts", "/app/", "/metrics"]),
                 st.sampled_from(["*", "http://x/health", "/app/../pyproject.toml", "/%00",
                                  "/health?x=" + "a" * 300, ""]) | TEXT)
VERSIONS = mostly(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]),
                  st.sampled_from(["HTTP/0.9", "HTTP/2.0", "http/1.1", "HTTP/1", "HTTP/1.1 ",
                                   ""]))
HEADERS = st.one_of(
    st.sampled_from([("Content-Length", "0"), ("Content-Length", "5"), ("Content-Length", "64"),
                     ("Transfer-Encoding", "chunked"), ("Connection", "close"),
                     ("Connection", "keep-alive"), ("Expect", "100-continue"),
                     ("Upgrade", "websocket"), ("x-api-key", KEY),
                     ("Authorization", f"Bearer {KEY}"), ("anthropic-version", "2023-06-01"),
                     ("Content-Type", "application/json"), ("X-Request-ID", "x"),
                     ("Host", "kestrel")]),
    st.tuples(
        st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", " Host",
                         "Content-Length ", "Transfer-Encoding\x00", "X"]) | TEXT,
        st.sampled_from(["-1", "99999999999999999999", "chunked, chunked", "gzip", "a\r\n b",
                         "\x00", "\r", "\n", "é", ""]) | TEXT),
)
EOLS = mostly(st.just("\r\n"), st.sampled_from(["\n", "\r", "\r\r\n", "\n\r"]))
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=64),
    st.builds(lambda parts: chunked(*parts), st.lists(st.binary(min_size=1, max_size=16),
                                                       max_size=3)),
    st.just(json.dumps(message_body("generated")).encode()),
)


@st.composite
def generated_request(draw: st.DrawFn) -> bytes:
    """One to three pipelined requests assembled from parts that parsers trip over."""
    out = b""
    for _ in range(draw(st.integers(1, 3))):
        eol = draw(EOLS)
        lines = [f"{draw(METHODS)} {draw(TARGETS)} {draw(VERSIONS)}"]
        if draw(USUALLY):  # HTTP/1.1 requires Host; leave it out now and then
            lines.append("Host: kestrel")
        lines += [f"{name}: {value}" for name, value in draw(st.lists(HEADERS, max_size=5))]
        out += (eol.join(lines) + eol + eol).encode("latin-1") + draw(BODIES)
    return out


VALID = [
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    head([f"Content-Length: {len(body('mutated'))}"]) + body("mutated"),
    head(["Transfer-Encoding: chunked"], target="/v1/messages/count_tokens")
    + chunked(body("mutated")[:20], body("mutated")[20:]),
    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /api/hello HTTP/1.1\r\nHost: x\r\n\r\n",
]
INSERTS = st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b" ", b":", b"\t", b"\xff",
                           b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n",
                           b"0\r\n\r\n", b"\r\n ", b"GET / HTTP/1.1\r\n"]) | st.binary(max_size=8)


@st.composite
def mutated_request(draw: st.DrawFn) -> bytes:
    """A valid request with a few byte-level mutations: flips, inserts, deletions, repeats."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(INSERTS)
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


def fuzz(stack: Stack, part: str, strategy: st.SearchStrategy[list[bytes]]) -> None:
    """Run Hypothesis examples (a few concurrent cases each); report the tally at the end."""
    tally = Tally()

    @settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(strategy)
    def case(batch: list[bytes]) -> None:
        async def main() -> list[Exchange]:
            return list(await asyncio.gather(*(
                attack(stack.kestrel, with_key(data, stack), quiet=FUZZ_QUIET)
                for data in batch)))

        for result in run(main(), deadline=30):
            tally.add(result)
            assert result.released, "the server kept the connection after the client's EOF"
            assert 500 not in result.statuses, result.responses

    try:
        with no_errors_logged(stack.kestrel):
            case()
    finally:
        report_tally(part, tally, alive=stack.kestrel.proc is not None
                     and stack.kestrel.proc.poll() is None)


def test_generated_requests(stack: Stack) -> None:
    """Requests assembled from framing headers, odd versions, bad line ends and bodies."""
    fuzz(stack, "generated", st.lists(generated_request(), min_size=3, max_size=3))


def test_mutated_requests(stack: Stack) -> None:
    """Valid requests, mutated byte by byte."""
    fuzz(stack, "mutated", st.lists(mutated_request(), min_size=3, max_size=3))


def test_corpus_names_are_unique() -> None:
    names = [case.name for case in corpus()]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[a-z0-9^.-]+", name) for name in names)
