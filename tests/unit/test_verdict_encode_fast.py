"""The verdict encoders on the worker's hot path against the definitions they replaced.

``Verdict.to_dict`` (the JSON body saved and answered) now writes the edge inline and skips the
reasons' comprehension when there are none; the compact wire row (``models.verdict_wire``)
returns early when no trailing field is set and reads whole numbers with fewer calls. The old
code is kept here, verbatim, as the reference: for generated verdicts (every field, edge values
like ``-0.0``, huge and non-whole counts, errors set to ``""``) both give the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from models.verdict import ACTIONS, MODES, Edge, Reason, Verdict, round4
from models.verdict_wire import _ACTION_INDEX, _DUPLICATE, _HELD, _MODE_INDEX, _encoder, _num, _row

TEXT = st.text(max_size=8)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
DETAIL = st.dictionaries(TEXT, st.none() | st.integers(-(2**63), 2**63 - 1) | FLOAT | TEXT | st.lists(TEXT, max_size=2),
                         max_size=3)


@st.composite
def verdicts(draw: st.DrawFn) -> Verdict:
    """Any verdict: ids shared with the envelope's ("p", "a", "t") or not, every optional field
    set or not, reasons with and without details."""
    same = st.booleans()
    return Verdict(
        event_id=draw(TEXT), agent_id="a" if draw(same) else draw(TEXT), run_id=draw(TEXT),
        chain=draw(TEXT), mode=draw(st.sampled_from(MODES) | TEXT),
        anomalous=draw(st.booleans()), score=draw(FLOAT | st.just(-0.0)),
        threshold=draw(FLOAT | st.just(0.0)),
        edge=Edge(draw(TEXT), draw(TEXT), draw(FLOAT),
                  draw(FLOAT | st.integers(0, 10**6).map(float)),
                  draw(FLOAT | st.integers(0, 10**6).map(float))),
        action=draw(st.sampled_from(ACTIONS) | TEXT),
        reasons=tuple(Reason(draw(TEXT), draw(st.sampled_from(ACTIONS)), draw(DETAIL))
                      for _ in range(draw(st.integers(0, 2)))),
        decided_at=draw(FLOAT), trace_id="t" if draw(same) else draw(TEXT),
        project_id="p" if draw(same) else draw(TEXT), chain_tag=draw(TEXT),
        mode_change=draw(st.sampled_from(["", "soft_lock", "locked", "locked(forced)"])),
        duplicate=draw(st.booleans()), held=draw(st.booleans()), error=draw(st.none() | TEXT),
    )


def to_dict_reference(self: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": self.event_id,
        "agent_id": self.agent_id,
        "run_id": self.run_id,
        "trace_id": self.trace_id,
        "project_id": self.project_id,
        "chain": self.chain,
        "chain_tag": self.chain_tag,
        "mode": self.mode,
        "anomalous": self.anomalous,
        "score": round4(self.score),
        "threshold": round4(self.threshold),
        "edge": self.edge.to_dict(),
        "action": self.action,
        "reasons": [r.to_dict() for r in self.reasons],
        "decided_at": self.decided_at,
        "duplicate": self.duplicate,
        "held": self.held,
    }
    if self.error:
        out["error"] = self.error
    if self.mode_change:
        out["mode_change"] = self.mode_change
    return out


def num_reference(x: float) -> float | int:
    negative_zero = x == 0 and math.copysign(1.0, x) < 0
    if x.is_integer() and abs(x) < 2**53 and not negative_zero:
        return int(x)
    return x


def row_reference(v: Verdict, project_id: str, agent_id: str, trace_id: str) -> list[Any]:
    e = v.edge
    row: list[Any] = [
        v.event_id, v.run_id, v.chain, v.chain_tag,
        _MODE_INDEX.get(v.mode, v.mode), v.anomalous,
        round4(v.score), round4(v.threshold),
        e.from_node, e.to_node, e.p, num_reference(float(e.count)),
        num_reference(float(e.row_total)),
        _ACTION_INDEX.get(v.action, v.action),
        [[r.source, r.action, dict(r.detail)] if r.detail else [r.source, r.action]
         for r in v.reasons],
        v.decided_at,
        (_DUPLICATE if v.duplicate else 0) | (_HELD if v.held else 0),
    ]
    tail: list[Any] = [
        v.error, v.mode_change or None,
        None if v.trace_id == trace_id else v.trace_id,
        None if v.agent_id == agent_id else v.agent_id,
        None if v.project_id == project_id else v.project_id,
    ]
    while tail and tail[-1] is None:
        tail.pop()
    row.extend(tail)
    return row


COUNTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0**53, 2.0**53 - 1, -(2.0**53), 1e300, 0.5]),
    st.integers(-(10**6), 10**6).map(float),
)


@settings(max_examples=500, deadline=None)
@given(verdicts(), st.sampled_from(["", None, "boom"]))
def test_to_dict_equals_the_reference(v: Verdict, error: str | None) -> None:
    for w in (v, Verdict(**{**{f: getattr(v, f) for f in v.__slots__}, "error": error})):
        assert orjson.dumps(w.to_dict()) == orjson.dumps(to_dict_reference(w))
        assert list(w.to_dict()) == list(to_dict_reference(w))


@settings(max_examples=500, deadline=None)
@given(COUNTS)
def test_num_equals_the_reference(x: float) -> None:
    got, want = _num(x), num_reference(x)
    assert type(got) is type(want)
    assert repr(got) == repr(want)  # NaN, -0.0 and ints by their text


@settings(max_examples=500, deadline=None)
@given(verdicts(), COUNTS, COUNTS, st.sampled_from(["", None]))
def test_row_equals_the_reference(v: Verdict, count: float, total: float, error: str | None) -> None:
    e = v.edge
    w = Verdict(**{**{f: getattr(v, f) for f in v.__slots__},
                   "edge": Edge(e.from_node, e.to_node, e.p, count, total), "error": error})
    for x in (v, w):
        assert _encoder.encode(_row(x, "p", "a", "t")) == _encoder.encode(
            row_reference(x, "p", "a", "t"))
