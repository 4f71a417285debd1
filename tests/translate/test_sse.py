"""The SSE decoder and encoder: the spec's corner cases, limits, and a round-trip property."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kestrel.translate.sse import SseDecoder, SseError, SseEvent, encode_event


def decode_all(*chunks: bytes) -> list[SseEvent]:
    decoder = SseDecoder()
    events: list[SseEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def decode_bytewise(stream: bytes) -> list[SseEvent]:
    return decode_all(*(stream[i : i + 1] for i in range(len(stream))))


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"event: ping\ndata: {}\n\n", [SseEvent("ping", "{}")], id="named"),
        pytest.param(b"data: x\n\n", [SseEvent(None, "x")], id="unnamed"),
        pytest.param(b"data: a\ndata: b\n\n", [SseEvent(None, "a\nb")], id="multi-line-data"),
        pytest.param(b"data: a\r\ndata: b\r\n\r\n", [SseEvent(None, "a\nb")], id="crlf"),
        pytest.param(b"data: a\rdata: b\r\r", [SseEvent(None, "a\nb")], id="cr"),
        pytest.param(b"data: a\r\ndata: b\rdata: c\n\r\n", [SseEvent(None, "a\nb\nc")], id="mixed"),
        pytest.param(b": comment\ndata: x\n:another\n\n", [SseEvent(None, "x")], id="comments"),
        pytest.param(
            b"id: 7\nretry: 10\nfoo: bar\nevent: e\ndata: x\n\n", [SseEvent("e", "x")], id="ignored"
        ),
        pytest.param(b"data:x\n\n", [SseEvent(None, "x")], id="no-space"),
        pytest.param(b"data:  x \n\n", [SseEvent(None, " x ")], id="only-one-space-stripped"),
        pytest.param(b"data\n\n", [SseEvent(None, "")], id="field-without-colon"),
        pytest.param(b"data:\n\n", [SseEvent(None, "")], id="empty-data"),
        pytest.param(b"data: a:b: c\n\n", [SseEvent(None, "a:b: c")], id="colons-in-value"),
        pytest.param(b"event: e\n\n", [], id="no-data-no-dispatch"),
        pytest.param(b"event:\ndata: x\n\n", [SseEvent(None, "x")], id="empty-name-is-default"),
        pytest.param(b"event: a\nevent: b\ndata: x\n\n", [SseEvent("b", "x")], id="last-name-wins"),
        pytest.param(b"\n\n\ndata: x\n\n\n", [SseEvent(None, "x")], id="extra-blank-lines"),
        pytest.param(b"\xef\xbb\xbfdata: x\n\n", [SseEvent(None, "x")], id="bom"),
        pytest.param(b"data: \xef\xbb\xbfx\n\n", [SseEvent(None, "\ufeffx")], id="bom-inside"),
        pytest.param(b"data: \xff\xfe\n\n", [SseEvent(None, "\ufffd\ufffd")], id="bad-utf8"),
        pytest.param(b"Data: x\n\n", [], id="field-names-case-sensitive"),
        pytest.param(
            b"data: x\n\ndata: y\n\n", [SseEvent(None, "x"), SseEvent(None, "y")], id="two"
        ),
    ],
)
def test_decoding(stream: bytes, expected: list[SseEvent]) -> None:
    assert decode_all(stream) == expected
    assert decode_bytewise(stream) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The LF completes the CRLF above; it must not count as the blank line ending the event.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == [SseEvent(None, "a")]
    assert decoder.feed(b"\n") == []  # again only the tail of a CRLF
    assert decoder.feed(b"data: b\n\n") == [SseEvent(None, "b")]


def test_cr_then_cr_across_chunks_is_a_blank_line() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SseEvent(None, "a")]


def test_utf8_character_split_across_chunks() -> None:
    encoded = "data: Ünïcödé ✓ 🦅\n\n".encode()
    for cut in range(len(encoded)):
        assert decode_all(encoded[:cut], encoded[cut:]) == [SseEvent(None, "Ünïcödé ✓ 🦅")]


def test_bom_split_across_chunks_is_still_skipped() -> None:
    assert decode_all(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [SseEvent(None, "x")]


def test_bom_only_at_stream_start() -> None:
    assert decode_all(b"data: x\n\n\xef\xbb\xbfdata: y\n\n") == [SseEvent(None, "x")]


def test_event_left_open_at_eof_is_not_dispatched() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"event: message_stop\ndata: {}\n") == []
    assert decoder.has_pending
    assert decoder.close() == []
    assert not decoder.has_pending


def test_unterminated_last_line_is_dropped_at_eof() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: x\n\ndata: y") == [SseEvent(None, "x")]
    assert decoder.has_pending
    assert decoder.close() == []


def test_line_over_the_limit_raises_and_decoding_recovers() -> None:
    decoder = SseDecoder(max_line_bytes=16)
    with pytest.raises(SseError) as caught:
        decoder.feed(b"data: ok\n\ndata: " + b"x" * 40 + b"\n\ndata: after\n\n")
    assert isinstance(caught.value, ValueError)
    # Only the oversized event is dropped; the rest of the same chunk is still decoded.
    assert caught.value.events == [SseEvent(None, "ok"), SseEvent(None, "after")]
    assert decoder.feed(b"data: next\n\n") == [SseEvent(None, "next")]


def test_unterminated_line_over_the_limit_is_not_buffered() -> None:
    decoder = SseDecoder(max_line_bytes=16)
    decoder.feed(b"event: big\n")
    with pytest.raises(SseError):
        decoder.feed(b"data: " + b"x" * 100)
    # The rest of that line is skipped without buffering, and without a second error.
    for _ in range(100):
        assert decoder.feed(b"y" * 1000) == []
    assert len(decoder._buf) == 0
    assert decoder.feed(b"still the same line\n\ndata: fine\n\n") == [SseEvent(None, "fine")]


def test_default_line_limit_is_one_mebibyte() -> None:
    decoder = SseDecoder()
    line = b"data: " + b"x" * (1024 * 1024 - 6)
    assert decoder.feed(line + b"\n\n") == [SseEvent(None, "x" * (1024 * 1024 - 6))]
    with pytest.raises(SseError):
        decoder.feed(line + b"xx\n\n")


def test_event_data_over_the_limit_raises_once_and_drops_the_event() -> None:
    decoder = SseDecoder(max_line_bytes=100, max_event_bytes=50)
    with pytest.raises(SseError):
        decoder.feed(b"data: " + b"a" * 30 + b"\ndata: " + b"b" * 30 + b"\n")
    assert decoder.feed(b"data: " + b"c" * 30 + b"\n") == []  # same broken event: no new error
    assert decoder.feed(b"\ndata: small\n\n") == [SseEvent(None, "small")]


def test_anthropic_stream_sample() -> None:
    stream = (
        b"event: message_start\n"
        b'data: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[],"model":"claude-sonnet-4-6","stop_reason":null,'
        b'"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}\n\n'
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b"event: content_block_delta\n"
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        b'"text":"Hello"}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    names = [e.event for e in decode_bytewise(stream)]
    assert names == ["message_start", "ping", "content_block_delta", "message_stop"]


@pytest.mark.parametrize(
    ("event", "data", "wire"),
    [
        ("ping", '{"type": "ping"}', b'event: ping\ndata: {"type": "ping"}\n\n'),
        (None, "x", b"data: x\n\n"),
        ("", "x", b"data: x\n\n"),
        ("e", "a\nb", b"event: e\ndata: a\ndata: b\n\n"),
        (None, "", b"data: \n\n"),
        (None, "a\r\nb\rc", b"data: a\ndata: b\ndata: c\n\n"),
        (None, "ü", "data: ü\n\n".encode()),
        (None, "a\ud800b", b"data: a?b\n\n"),
    ],
)
def test_encode_event(event: str | None, data: str, wire: bytes) -> None:
    assert encode_event(event, data) == wire


@pytest.mark.parametrize("name", ["a\nb", "a\rb"])
def test_encode_event_refuses_a_name_with_a_line_break(name: str) -> None:
    with pytest.raises(SseError):
        encode_event(name, "x")


# --- property ---------------------------------------------------------------------------------

# Lone surrogates cannot be UTF-8 at all (see test_encode_event); everything else is fair game.
event_names = st.one_of(
    st.none(),
    st.just(""),
    st.text(st.characters(codec="utf-8", blacklist_characters="\r\n"), max_size=12),
)
event_data = st.text(st.characters(codec="utf-8"), max_size=60)
streams = st.lists(st.tuples(event_names, event_data), max_size=8)


@settings(max_examples=300, database=None)
@given(
    events=streams,
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    line_ending=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_round_trip_through_arbitrary_chunking(
    events: list[tuple[str | None, str]], cuts: list[int], line_ending: bytes
) -> None:
    wire = b"".join(encode_event(name, data) for name, data in events)
    # The encoder writes LF; any of the three line endings is the same stream.
    wire = wire.replace(b"\n", line_ending)
    points = sorted({min(c, len(wire)) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]

    expected = [
        SseEvent(name or None, data.replace("\r\n", "\n").replace("\r", "\n"))
        for name, data in events
    ]
    assert decode_all(*chunks) == expected


def test_ignored_events_are_framed_and_counted_but_not_returned() -> None:
    stream = (b"event: ping\ndata: {\"type\": \"ping\"}\n\n"
              b"event: message_start\ndata: {\"a\": 1}\n\n"
              b"data: before the name\nevent: content_block_delta\ndata: more\n\n"
              b"event: content_block_delta\ndata: \xe2\x82\n\n"  # invalid UTF-8: never decoded
              b"event: message_stop\ndata: {}\n\n")
    for size in (1, 2, 7, len(stream)):
        decoder = SseDecoder(ignore=frozenset({"ping", "content_block_delta"}))
        events = [e for i in range(0, len(stream), size) for e in decoder.feed(stream[i:i + size])]
        assert events == [SseEvent("message_start", '{"a": 1}'), SseEvent("message_stop", "{}")]
        assert decoder.ignored == 3
        assert not decoder.has_pending


EVENT_CHUNKS = [
    b"event: content_block_delta\ndata: {\"t\": 1}\n\n",
    b"event:ping\ndata\n\n",  # no space, a data line without a colon
    b"event: ping\n\n",  # no data: never dispatched
    b": a comment\n\n",
    b"event: content_block_delta\n: comment\ndata: a\ndata: b\n\n",
    b"event: message_delta\ndata: {\"usage\": {}}\n\n",
    b"event: content_block_delta\r\ndata: crlf\r\n\r\n",
    b"event: content_block_delta\ndata: two\n\nevent: message_stop\ndata: {}\n\n",
    b"event: content_block_delta\ndata: half",
    b" of it\n\n",
    b"data: nameless\n\n",
    b"event: content_block_deltax\ndata: not quite the name\n\n",
    # A reader that fell behind: several events in one chunk, ignored ones first.
    b"event: ping\ndata: {}\n\nevent: content_block_delta\ndata: 1\n\n"
    b"event: message_delta\ndata: {\"usage\": {}}\n\nevent: ping\ndata: {}\n\n",
    b"event: content_block_delta\ndata: 2\n\nevent: content_block_delta\ndata: 3\n\n",
    # Named as ignored, renamed by a later line: the last name counts.
    b"event: ping\nevent: message_delta\ndata: {\"usage\": 1}\n\n",
]


def test_ignoring_returns_what_a_plain_decoder_does_minus_the_ignored() -> None:
    ignore = frozenset({"ping", "content_block_delta"})
    plain, ignoring = SseDecoder(), SseDecoder(ignore=ignore)
    expected: list[SseEvent] = []
    got: list[SseEvent] = []
    for chunk in EVENT_CHUNKS:  # one event per chunk, as streams usually arrive
        expected += plain.feed(chunk)
        got += ignoring.feed(chunk)
    assert got == [e for e in expected if e.event not in ignore]
    assert ignoring.ignored == sum(e.event in ignore for e in expected) == 11
    assert SseEvent("message_delta", '{"usage": 1}') in got


@settings(max_examples=300, database=None)
@given(
    events=st.lists(st.tuples(st.sampled_from([None, "ping", "content_block_delta",
                                               "message_delta", "message_stop"]),
                              event_data), max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
    line_ending=st.sampled_from([b"\n", b"\r\n"]),
)
def test_ignoring_matches_a_plain_decoder_through_arbitrary_chunking(
    events: list[tuple[str | None, str]], cuts: list[int], line_ending: bytes
) -> None:
    ignore = frozenset({"ping", "content_block_delta"})
    wire = b"".join(encode_event(name, data) for name, data in events).replace(b"\n",
                                                                              line_ending)
    points = sorted({min(c, len(wire)) for c in cuts})
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    plain, ignoring = SseDecoder(), SseDecoder(ignore=ignore)
    expected = [e for chunk in chunks for e in plain.feed(chunk)]
    got = [e for chunk in chunks for e in ignoring.feed(chunk)]
    assert got == [e for e in expected if e.event not in ignore]
    assert ignoring.ignored == len(expected) - len(got)


LINES = st.lists(st.one_of(
    st.sampled_from([b"", b"event: ping", b"event: message_delta", b"event:", b"event",
                     b"data", b"data:", b": comment", b"id: 7", b"Data: x", b"event: a\r"]),
    st.builds(lambda text: b"data: " + text.encode(), event_data.filter(
        lambda t: "\r" not in t and "\n" not in t)),
), max_size=16)


@settings(max_examples=300, database=None)
@given(lines=LINES, ignore=st.sampled_from([frozenset(), frozenset({"ping"})]))
def test_a_chunk_of_whole_events_decodes_as_its_bytes_one_by_one(
        lines: list[bytes], ignore: frozenset[str]) -> None:
    """Whole events in one chunk take a shortcut past the line-by-line path, which a stream
    fed a byte at a time always takes: the two must agree on any lines at all."""
    wire = b"\n".join(lines) + b"\n\n"
    whole, bytewise = SseDecoder(ignore=ignore), SseDecoder(ignore=ignore)
    expected = [e for i in range(len(wire)) for e in bytewise.feed(wire[i:i + 1])]
    assert whole.feed(wire) == expected
    assert whole.ignored == bytewise.ignored
    assert whole.has_pending == bytewise.has_pending
