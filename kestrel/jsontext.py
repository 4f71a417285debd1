"""JSON text on the request path, from encoders and decoders made once.

`json.JSONEncoder.encode` builds a new C encoder, and the functions around it, on every call:
about 0.7 µs, more than encoding a small value takes (a log line's attempts, a conversation's
opening, an access line, a translated stream chunk). `encoder` builds the C encoder once and
calls it directly. The output is the same text `JSONEncoder(...).encode` gives with the same
options; a test holds the two side by side.

No check for circular references, unlike the stdlib's default: the values encoded here come
from parsed JSON and Kestrel's own records, which cannot hold a cycle, and a shared table of
markers would be left behind by an encoding that failed half-way.
"""

from __future__ import annotations

import codecs
import json.encoder
import math
from collections.abc import Callable
from typing import Any, TypeGuard

Encode = Callable[[Any], str]


def encoder(*, compact: bool = False, sort_keys: bool = False, ensure_ascii: bool = True,
            default: Callable[[Any], Any] | None = None) -> Encode:
    """A function that turns a value into JSON text: `compact` without spaces after `,` and
    `:`; the other options as `json.JSONEncoder` takes them."""
    separators = (",", ":") if compact else (", ", ": ")
    stdlib = json.JSONEncoder(separators=separators, sort_keys=sort_keys,
                              ensure_ascii=ensure_ascii, default=default,
                              check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # an interpreter without the C accelerator
        return stdlib.encode
    strings = (json.encoder.encode_basestring_ascii if ensure_ascii
               else json.encoder.encode_basestring)
    encode = make(None, stdlib.default, strings, None, separators[1], separators[0], sort_keys,
                  False, True)

    def text(value: Any) -> str:
        return "".join(encode(value, 0))
    return text


# Compact, non-ASCII characters as they are: the JSON Kestrel answers with and sends upstream.
compact = encoder(compact=True, ensure_ascii=False)
_string = json.encoder.encode_basestring  # the C escaper when the accelerator is there


def value_text(value: Any) -> str:
    """One value as `compact` writes it, for JSON written around it as text. A string, a
    whole number, a finite float or None goes straight to what `compact` would write it with
    (the escaper, `repr`, "null"): the encoder's list of pieces and the join after it cost
    more than writing a short value does. bool is not `int` here: it is written "true"."""
    kind = type(value)
    if kind is str:
        return _string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return compact(value)


_PLAIN = json.JSONDecoder()


def parse(raw: bytes, decoder: json.JSONDecoder = _PLAIN) -> Any:
    """JSON from UTF-8 bytes (a byte order mark is skipped, as RFC 8259 §8.1 allows), with
    `decoder` (a plain one by default). Raises ValueError (UnicodeDecodeError included).

    `json.loads(bytes)` sniffs for UTF-16 and UTF-32 in Python first, then makes a new
    decoder when given an option: together a quarter of parsing an answer of a few hundred
    bytes. JSON between systems is UTF-8 (RFC 8259 §8.1), so nothing here sniffs. The
    utf-8-sig codec is written in Python: only a body with a mark takes it.
    """
    text = raw.decode("utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8")
    return parse_text(text, decoder)


def parse_text(text: str, decoder: json.JSONDecoder = _PLAIN) -> Any:
    """JSON from text, as `decoder.decode` reads it. With the plain decoder, that is what
    `json.loads` reads; it words one refusal differently (a text opening with a byte order mark).

    `decode` looks for whitespace before and after the value with a regular expression, in
    Python, around the scanner in C: two fifths of reading an event of a stream, a fifth of a
    short answer. JSON between programs rarely has any, so the scanner is tried alone first,
    and `decode` reads what it did not take whole: whitespace around the value, or text that
    is not JSON, which then fails with `decode`'s own error.
    """
    try:
        value, end = decoder.scan_once(text, 0)  # type: ignore[attr-defined]  # set in __init__
    except StopIteration:  # no value starts at the first character
        return decoder.decode(text)
    return value if end == len(text) else decoder.decode(text)


def is_count(value: object) -> TypeGuard[int]:
    """Whether a parsed JSON value is a count: a whole number, at least 0. `type(...) is int`
    leaves out bool, a subclass of int, which JSON's true and false parse to."""
    return type(value) is int and value >= 0
