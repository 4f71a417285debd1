"""Incremental Server-Sent Events decoder and encoder, pure and bounded.

The decoder follows the WHATWG "event stream interpretation" algorithm
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):

- lines end in CRLF, LF or CR, and a chunk may split anywhere, even between the CR and LF of one
  line ending or inside a multi-byte UTF-8 character;
- a line starting with ":" is a comment; `field: value` loses exactly one space after the colon;
  a line without a colon is a field with an empty value;
- `data` lines are joined with "\\n"; `event` names the event; `id` and `retry` are ignored (the
  proxy never reconnects a stream on its own); unknown fields are ignored;
- an event is dispatched on a blank line, and only if it had at least one `data` line;
- a UTF-8 byte-order mark at the very start of the stream is skipped; invalid UTF-8 becomes
  U+FFFD, as the spec says.

EOF choice: `close()` dispatches nothing. The spec discards an event that the stream ends in the
middle of ("If the file ends in the middle of an event, before the final empty line, the
incomplete event is not dispatched"), and Anthropic always ends its events with a blank line, so
a trailing fragment means a cut stream; `has_pending` tells the caller one was dropped.

Lines are split on bytes before decoding (CR and LF never occur inside a multi-byte UTF-8
sequence), so a character split across chunks is decoded once its whole line has arrived.
"""

from __future__ import annotations

from typing import NamedTuple

# The longest single line we buffer. Anthropic sends each event as one `data:` line, and the
# largest legitimate ones (a content_block_start carrying a server tool result) stay well below
# this; a line past it is a broken or hostile upstream, not something to hold in memory.
MAX_LINE_BYTES = 1024 * 1024

# The most `data` one event may accumulate over several lines (each within MAX_LINE_BYTES):
# without it, endless data lines and no blank line would buffer without bound.
MAX_EVENT_BYTES = 8 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


class SseError(ValueError):
    """The stream broke a limit. The offending line or event is dropped and decoding goes on.

    `events` holds every other event the same `feed()` call completed (the chunk is decoded to
    its end before raising), so a caller who catches the error loses only the oversized event.
    """

    def __init__(self, message: str, events: list[SseEvent] | None = None) -> None:
        super().__init__(message)
        self.events: list[SseEvent] = events if events is not None else []


class SseEvent(NamedTuple):
    """A named tuple, made for every event of a stream translated: see `kestrel.domain` for
    why not a frozen dataclass."""

    event: str | None
    """The `event:` field; None when the event had none (or an empty one): the spec's "message"."""
    data: str


class SseDecoder:
    """Feed it bytes as they come, get back the events each chunk completed.

    Events named in `ignore` are framed like any other but their data is neither decoded nor
    kept, and they are counted in `ignored` instead of returned: a reader that wants a few kinds
    of event out of a stream of many (usage out of text deltas) then pays for none of the rest.
    """

    def __init__(
        self, *, max_line_bytes: int = MAX_LINE_BYTES, max_event_bytes: int = MAX_EVENT_BYTES,
        ignore: frozenset[str] = frozenset(),
    ) -> None:
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        self._ignore = ignore
        self.ignored = 0
        self._buf = bytearray()  # the current, unterminated line
        self._started = False  # past the optional BOM
        self._skip_lf = False  # last chunk ended in CR: a leading LF belongs to that line end
        self._discarding = False  # dropping the rest of an oversized line
        self._event: str | None = None
        self._data: list[str] = []
        self._data_size = 0
        self._has_data = False
        self._event_broken = False  # part of the current event was dropped: do not dispatch it
        self._in_event = False  # some field line seen since the last dispatch

    @property
    def has_pending(self) -> bool:
        """True when bytes of an unfinished line or event are buffered."""
        return bool(self._buf) or self._in_event

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Decode `chunk`; return the events it completed, in order.

        Raises `SseError` when a line exceeds `max_line_bytes` or an event's data exceeds
        `max_event_bytes`, after decoding the whole chunk: the error carries the other events,
        only the offending event is lost, and the decoder stays usable.
        """
        events: list[SseEvent] = []
        raw = bytes(chunk)
        if not self._started:
            # The BOM may itself arrive split, so wait for three bytes (or a mismatch) first.
            raw = bytes(self._buf) + raw
            if len(raw) < len(_BOM) and _BOM.startswith(raw):
                self._buf = bytearray(raw)
                return events
            self._started = True
            self._buf.clear()
            if raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
        taken = self._whole_events(raw, events)
        if taken == len(raw):
            return events
        if taken:
            raw = raw[taken:]

        pos, end = 0, len(raw)
        if self._skip_lf and end:
            self._skip_lf = False
            if raw[0] == 0x0A:
                pos = 1
        error: str | None = None
        cr = raw.find(b"\r", pos)
        lf = raw.find(b"\n", pos)
        while pos < end:
            # Search again only once we passed the last hit: one scan per chunk, not per line.
            if cr != -1 and cr < pos:
                cr = raw.find(b"\r", pos)
            if lf != -1 and lf < pos:
                lf = raw.find(b"\n", pos)
            if cr == -1 and lf == -1:
                self._append_partial(raw, pos, end)
                if len(self._buf) > self._max_line:
                    self._buf.clear()
                    self._discarding = True
                    self._event_broken = True
                    self._in_event = True
                    error = error or f"SSE line longer than {self._max_line} bytes"
                break
            if cr == -1 or (lf != -1 and lf < cr):
                stop, nxt = lf, lf + 1
            elif cr + 1 < end:
                stop, nxt = cr, (cr + 2 if raw[cr + 1] == 0x0A else cr + 1)
            else:
                # A CR ending the chunk: the LF of a CRLF may open the next one.
                stop, nxt = cr, cr + 1
                self._skip_lf = True
            if self._discarding:
                self._discarding = False  # the oversized line ends here; nothing to process
            else:
                if self._buf:  # the line began in an earlier chunk
                    self._append_partial(raw, pos, stop)
                    line = bytes(self._buf)
                    self._buf.clear()
                else:
                    line = raw[pos:stop]
                if len(line) > self._max_line:
                    self._event_broken = True
                    self._in_event = True
                    error = error or f"SSE line longer than {self._max_line} bytes"
                else:
                    problem = self._process_line(line, events)
                    error = error or problem
            pos = nxt
        if error is not None:
            raise SseError(error, events)
        return events

    def close(self) -> list[SseEvent]:
        """End of stream: drop any unfinished line or event (see the module docstring)."""
        self._buf.clear()
        self._discarding = False
        self._skip_lf = False
        self._reset_event()
        return []

    # --- internals --------------------------------------------------------------------------

    def _whole_events(self, raw: bytes, events: list[SseEvent]) -> int:
        """Take the whole events of the usual shape at the start of `raw`; return how many
        bytes they span.

        The usual chunk of a stream is one event or, when the reader fell behind, a few: each
        an `event: ` line, a `data: ` line, a blank line, as Anthropic writes them. Those are
        taken here whole, with a few searches each; the line-by-line path would reach the same
        end a line at a time, at about 1.6 times the cost. An ignored event may have any lines
        after its name but another name. The line path takes over from the first event of any
        other shape.
        """
        if self._buf or self._in_event or self._skip_lf or self._discarding or 13 in raw:  # CR
            return 0
        pos = 0
        while raw.startswith(b"event: ", pos):
            blank = raw.find(b"\n\n", pos)
            if blank < 0 or blank + 2 - pos > self._max_line:
                break
            first_end = raw.find(b"\n", pos)
            kind = raw[pos + 7:first_end].decode("utf-8", errors="replace")
            if kind in self._ignore:
                # Searched from the first line's LF to the last line's (with `find`: `in`
                # first tries to read the bytes as an integer, and builds a TypeError).
                end = blank + 1
                if raw.find(b"\nevent", first_end, end) >= 0:  # renamed by a later line:
                    break  # the line path decides
                if (raw.find(b"\ndata:", first_end, end) >= 0
                        or raw.find(b"\ndata\n", first_end, end) >= 0):
                    self.ignored += 1  # dispatched only with a data line, as the spec says
            elif (raw.startswith(b"data: ", first_end + 1)
                    and raw.find(b"\n", first_end + 1) == blank  # the one line after the name
                    and blank - first_end - 6 <= self._max_event):  # its data and a newline
                events.append(SseEvent(kind or None,
                                       raw[first_end + 7:blank].decode("utf-8", errors="replace")))
            else:
                break
            pos = blank + 2
        return pos

    def _append_partial(self, raw: bytes, start: int, stop: int) -> None:
        if self._discarding:
            return
        # Never copy more than one byte past the limit: the check after this call fires anyway.
        room = self._max_line + 1 - len(self._buf)
        self._buf += raw[start : min(stop, start + max(room, 0))]

    def _reset_event(self) -> None:
        self._event = None
        self._data = []
        self._data_size = 0
        self._has_data = False
        self._event_broken = False
        self._in_event = False

    def _process_line(self, line: bytes, events: list[SseEvent]) -> str | None:
        if not line:
            if self._has_data and not self._event_broken:
                if self._event in self._ignore:
                    self.ignored += 1
                else:
                    events.append(SseEvent(event=self._event or None,
                                           data="\n".join(self._data)))
            self._reset_event()
            return None
        if line[0] == 0x3A:  # ":" starts a comment
            return None
        self._in_event = True
        name, value = _field(line)
        if name == b"data":
            self._has_data = True
            if self._event_broken or self._event in self._ignore:
                return None
            self._data_size += len(value) + 1
            if self._data_size > self._max_event:
                self._event_broken = True
                self._data = []
                return f"SSE event data longer than {self._max_event} bytes"
            self._data.append(value.decode("utf-8", errors="replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
            if self._event in self._ignore:  # data lines may come first (the spec allows it)
                self._data = []
                self._data_size = 0
        # "id", "retry" and unknown fields are ignored on purpose.
        return None


def _field(line: bytes) -> tuple[bytes, bytes]:
    """A field line's name and value: the value loses exactly one space after the colon, and a
    line without a colon is a field with an empty value."""
    name, sep, value = line.partition(b":")
    if sep and value[:1] == b" ":
        value = value[1:]
    return name, value


def encode_event(event: str | None, data: str) -> bytes:
    """One event on the wire: an optional `event:` line, one `data:` line per line of `data`.

    SSE cannot carry a bare CR inside data (every CR ends a line), so CRLF and CR in `data` are
    written as LF, which is what a decoder would have turned them into anyway. An event name with
    a line break cannot be written at all and raises `SseError`. An empty name is the same as
    None: the decoder's default event. A lone surrogate (possible after `json.loads` of a
    `"\\ud800"` escape) cannot be UTF-8 and is written as "?" rather than failing mid-stream.
    """
    if event is not None and ("\r" in event or "\n" in event):
        raise SseError("SSE event name must not contain a line break")
    lines = data.replace("\r\n", "\n").replace("\r", "\n")
    text = "data: " + lines.replace("\n", "\ndata: ") + "\n\n"
    if event:
        text = "event: " + event + "\n" + text
    return text.encode("utf-8", errors="replace")
