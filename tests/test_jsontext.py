"""The request path's JSON encoders write what `json.JSONEncoder` writes with the same options."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kestrel.jsontext import encoder

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
