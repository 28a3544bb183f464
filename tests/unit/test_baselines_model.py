"""models.baselines: probabilities from the stored counts, JSON and DOT renderings."""

from __future__ import annotations

import json

from models.baselines import baseline_from_state, to_dot, to_json


def test_probabilities_use_row_totals_and_fall_back_to_edge_sums() -> None:
    # rows hold the engine's totals (they may include transitions capped away); n2 has no row
    b = baseline_from_state("p/a/s", "t", {"mode": "1", "runs": "7", "ovf": "2", "elig": "1"},
                            {"^\tn1": 4000, "n1\tn2": 1000, "n2\t$": 500, "n2\tn1": 1500},
                            {"^": 4000, "n1": 2000})
    p = {(t.source, t.target): t.p for t in b.transitions}
    assert p[("^", "n1")] == 1.0 and p[("n1", "n2")] == 0.5
    assert p[("n2", "$")] == 0.25 and p[("n2", "n1")] == 0.75
    assert (b.mode, b.runs, b.overflow, b.eligible, b.forced) == ("soft_lock", 7, 2, True, False)
    assert [t.count for t in b.transitions] == [4.0, 1.5, 1.0, 0.5]


def test_json_and_dot_render_the_top_transitions() -> None:
    b = baseline_from_state('p/a "quoted"', "t", {"mode": "0", "runs": "3"},
                            {"^\tn1": 3000, "n1\t$": 3000, "n1\tn2": 1000}, {})
    doc = json.loads(json.dumps(to_json(b, top=2)))
    assert doc["transitions_total"] == 3 and len(doc["transitions"]) == 2
    assert doc["mode"] == "shadow" and doc["last_change"] is None
    dot = to_dot(b)
    assert dot.startswith('digraph "p/a \\"quoted\\"" {')
    assert dot.count(" -> ") == 3 and '"n1" -> "n2" [label="0.250", penwidth=1.5];' in dot
    assert '"^" [label="START", shape=ellipse];' in dot
