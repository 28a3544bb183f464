"""The hot-loop builders (models/verdict_build.py) make exactly the objects the dataclasses'
own constructors make."""

from __future__ import annotations

import dataclasses
import doctest
import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import verdict_build
from models.verdict import Edge, Reason, Verdict
from models.verdict_build import make_edge, make_verdict

TEXT = st.text(max_size=12)
FLOATS = st.floats(allow_nan=False)
EDGES = st.builds(lambda *a: a, TEXT, TEXT, FLOATS, FLOATS, FLOATS)
REASONS = st.lists(
    st.builds(Reason, TEXT, st.sampled_from(["allow", "flag", "pause", "reject"]),
              st.dictionaries(TEXT, st.integers(), max_size=3)),
    max_size=3,
).map(tuple)


def fields_of(obj: Any) -> list[tuple[str, Any]]:
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]


@given(EDGES, st.lists(TEXT, min_size=9, max_size=9), st.booleans(), st.booleans(),
       st.booleans(), FLOATS, FLOATS, FLOATS, REASONS, st.none() | TEXT, st.integers(12, 19))
def test_same_objects_as_the_constructor(
    edge_args: tuple[Any, ...], texts: list[str], anomalous: bool, duplicate: bool, held: bool,
    score: float, threshold: float, decided_at: float, reasons: tuple[Reason, ...],
    error: str | None, given_n: int,
) -> None:
    edge = make_edge(*edge_args)
    assert type(edge) is Edge
    assert fields_of(edge) == fields_of(Edge(*edge_args))
    full = (texts[0], texts[1], texts[2], texts[3], texts[4], anomalous, score, threshold, edge,
            texts[5], reasons, decided_at, texts[6], texts[7], texts[8], "soft_lock", duplicate,
            held, error)
    args = full[:given_n]  # the defaults of the trailing fields too
    built, reference = make_verdict(*args), Verdict(*args)
    assert type(built) is Verdict
    assert fields_of(built) == fields_of(reference)
    assert built == reference
    if not reasons:  # a reason's detail is a dict: unhashable whichever way it was built
        assert hash(built) == hash(reference)
    assert built.to_dict() == reference.to_dict()


def test_still_frozen() -> None:
    v = make_verdict("e", "a", "r", "c", "shadow", False, 0.0, 1.0,
                     make_edge("x", "y", 1.0, 1.0, 1.0), "allow", (), 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.action = "reject"  # type: ignore[misc]
    assert dataclasses.replace(v, action="flag").action == "flag"


@pytest.mark.parametrize("cls,fn", [(Verdict, make_verdict), (Edge, make_edge)])
def test_parameters_follow_the_fields(cls: type, fn: Any) -> None:
    """The typed signatures mypy sees name the fields in the class's order, with its defaults."""
    params = list(inspect.signature(fn).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]


def test_doctests() -> None:
    assert doctest.testmod(verdict_build).failed == 0
