"""``round4`` (models/verdict.py) is ``round(x, 4)`` with a negative zero made positive — value and
sign, for any float, asked once or many times in any order (it remembers values). A verdict's
``"score": -0.0`` (a certain transition, ``-log2(1)``) read as a bug to users."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from models.verdict import round4

FLOATS = st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 5e-05, -5e-05, 1.00005, 2.5e-05]))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


@given(st.lists(FLOATS, max_size=30))
def test_round4_is_round_to_4(xs: list[float]) -> None:
    for x in xs + xs[::-1]:
        want = round(x, 4)
        assert _same(round4(x), 0.0 if want == 0 else want), x


def test_ints_stay_ints_after_equal_floats() -> None:
    assert type(round4(3.0)) is float and type(round4(3)) is int and round4(3) == 3


def test_no_negative_zero_whichever_came_first() -> None:
    for x in (0.0, -0.0, -1e-05, 0.0, -4.9e-05, -0.0):
        assert math.copysign(1, round4(x)) == 1, x
    assert math.copysign(1, round4(-5e-05)) == -1  # rounds to -0.0001: a real negative
