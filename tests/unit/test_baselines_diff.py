"""models.baselines_diff: what changed between two baseline exports."""

from __future__ import annotations

from typing import Any

import pytest

from models.baselines_diff import diff_exports
from models.errors import ValidationError


def _doc(chain: str, mode: str = "locked", unl: bool = False,
         edges: dict[tuple[str, str], float] | None = None, total: int | None = None
         ) -> dict[str, Any]:
    edges = edges if edges is not None else {("^", "n1"): 1.0, ("n1", "$"): 1.0}
    return {"chain": chain, "mode": mode, "unlearnable": unl,
            "transitions": [{"from": f, "to": t, "p": p} for (f, t), p in edges.items()],
            "transitions_total": total if total is not None else len(edges),
            "labels": {"n1": {"service": "s", "action": "s.get", "paths": ["id:str"],
                              "total_paths": 1}}}


def test_chains_added_removed_and_unchanged() -> None:
    d = diff_exports([_doc("p/a/s"), _doc("p/b/s")], [_doc("p/a/s"), _doc("p/c/s")])
    assert d.added_chains == ("p/c/s",) and d.removed_chains == ("p/b/s",) and d.chains == ()
    assert d.differs
    assert not diff_exports([_doc("p/a/s")], _doc("p/a/s")).differs  # list or one object


def test_mode_unlearnable_and_transition_changes() -> None:
    before = _doc("p/a/s", mode="soft_lock", edges={("^", "n1"): 1.0, ("n1", "$"): 0.9,
                                                    ("n1", "n2"): 0.1})
    after = _doc("p/a/s", mode="soft_lock", unl=True,
                 edges={("^", "n1"): 1.0, ("n1", "$"): 0.6, ("n1", "n3"): 0.4})
    d = diff_exports(before, after, min_shift=0.05)
    (c,) = d.chains
    assert c.mode is None and c.unlearnable == (False, True)
    assert [(t["from"], t["to"]) for t in c.added] == [("n1", "n3")]
    assert [(t["from"], t["to"], t["p_before"]) for t in c.removed] == [("n1", "n2", 0.1)]
    assert [(t["to"], t["shift"]) for t in c.shifted] == [("$", -0.3)]
    text = d.render_text()
    assert "unlearnable: false -> true" in text
    assert "~ s s.get {id:str} -> END  p 0.900 -> 0.600 (-0.300)" in text
    # a shift under min_shift is not a difference
    small = diff_exports(before, _doc("p/a/s", mode="soft_lock", edges={
        ("^", "n1"): 1.0, ("n1", "$"): 0.88, ("n1", "n2"): 0.12}), min_shift=0.05)
    assert not small.differs


def test_partial_exports_and_bad_input() -> None:
    d = diff_exports(_doc("p/a/s", total=9), _doc("p/a/s", mode="shadow", total=9))
    assert d.chains[0].partial and "only exported transitions compared" in d.render_text()
    with pytest.raises(ValidationError, match="second export: item 0 is not a baseline export"):
        diff_exports(_doc("p/a/s"), {"chains": []})
    with pytest.raises(ValidationError, match="min_shift"):
        diff_exports(_doc("p/a/s"), _doc("p/a/s"), min_shift=2)
