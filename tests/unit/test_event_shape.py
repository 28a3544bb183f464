"""The one-walk payload check of ingest validation agrees with the three walks it replaced."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.events import DEFAULT_LIMITS, _check_numbers, _shape, json_depth, json_key_count
from ratchet.errors import ValidationError

_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**16), max_value=10**16)
    | st.floats() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=3), children, max_size=4),
    max_leaves=25,
)


def _bad(value: Any) -> bool:
    try:
        _check_numbers(value, "payload", DEFAULT_LIMITS)
    except ValidationError:
        return True
    return False


@settings(max_examples=500, deadline=None)
@given(_values)
def test_shape_agrees_with_depth_key_count_and_number_checks(value: Any) -> None:
    assert _shape(value, DEFAULT_LIMITS.max_abs_number) == (
        json_depth(value), json_key_count(value), _bad(value)
    )


@pytest.mark.parametrize(
    "value, bad",
    [({"a": [1, {"b": math.inf}]}, True), ({"a": 1e16}, True), ({"a": True, "b": 1e15}, False),
     ({"a": [None, "x", -1e15]}, False), (float("nan"), True)],
)
def test_shape_flags_bad_numbers(value: Any, bad: bool) -> None:
    assert _shape(value, DEFAULT_LIMITS.max_abs_number)[2] is bad
