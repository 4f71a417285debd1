"""The request path's JSON encoders write what `json.JSONEncoder` writes with the same options,
and its decoding reads what `json.loads` reads."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.jsontext import compact, encoder, parse_text, value_text

SCALARS = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=True, allow_infinity=True))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
OPTIONS = [
    {},
    {"compact": True},
    {"compact": True, "sort_keys": True, "ensure_ascii": False, "default": str},
    {"ensure_ascii": False, "default": str},
]


def _stdlib(compact: bool = False, **options: Any) -> json.JSONEncoder:
    return json.JSONEncoder(separators=(",", ":") if compact else (", ", ": "), **options)


@pytest.mark.parametrize("options", OPTIONS)
@given(value=VALUES)
def test_the_text_is_the_stdlibs(options: dict[str, Any], value: Any) -> None:
    assert encoder(**options)(value) == _stdlib(**options).encode(value)


def test_a_value_json_cannot_hold_goes_through_default_or_fails_and_the_next_one_is_fine(
) -> None:
    value = {"a set": {1, 2}, "a type": object}
    text = encoder(compact=True, default=str)(value)
    assert text == _stdlib(compact=True, default=str).encode(value)
    assert text == '{"a set":"{1, 2}","a type":"<class \'object\'>"}'
    strict = encoder(compact=True)
    with pytest.raises(TypeError):
        strict({"a": [1, {"b": object()}]})
    assert strict({"a": [1, {"b": 2}]}) == '{"a":[1,{"b":2}]}'


def test_floats_and_text_are_written_as_the_stdlib_writes_them() -> None:
    value = [0.1, 1e300, -0.0, math.inf, "é\u2028\n\"", {"ü": None}]
    for options in OPTIONS:
        assert encoder(**options)(value) == _stdlib(**options).encode(value)


FINITE = st.recursive(st.none() | st.booleans() | st.integers() | st.text() | st.floats(
    allow_nan=False), lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
SPACE = st.sampled_from(["", " ", "\n", "\t\r\n "])


@given(value=VALUES)
def test_value_text_is_what_compact_writes(value: Any) -> None:
    assert value_text(value) == compact(value)


@given(value=FINITE, before=SPACE, after=SPACE, compact_text=st.booleans())
def test_parse_text_reads_what_json_loads_reads(value: Any, before: str, after: str,
                                                compact_text: bool) -> None:
    text = before + (compact(value) if compact_text else json.dumps(value, indent=1)) + after
    assert parse_text(text) == json.loads(text)


@pytest.mark.parametrize("text", ["", " ", "{", '{"a": 1} x', "1 2", "\ufeff{}", "[1,]", "nul",
                                  '"\\x"', "{} {}", "[1] ]"])
def test_parse_text_refuses_what_the_decoder_refuses_with_its_words(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    with pytest.raises(ValueError) as expected:
        json.JSONDecoder().decode(text)
    with pytest.raises(ValueError) as got:
        parse_text(text)
    assert str(got.value) == str(expected.value)
