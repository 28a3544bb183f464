"""models.explain and models.labels: nearest known shape, key paths, threshold basis, words."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from models.explain import explain, jaccard, nearest_shape, render_text, shape_diff, threshold_basis
from models.labels import NodeLabel, key_paths, label_of
from models.params import EngineParams
from models.skeleton import skeleton
from models.verdict import Edge, Reason, Verdict


def test_jaccard_and_nearest_shape() -> None:
    cur = {"to:str", "subject:str", "bcc:str"}
    known = {
        "send": {"to:str", "subject:str", "body:str"},      # 2 of 4
        "reply": {"to:str", "subject:str", "bcc:str", "in_reply_to:str"},  # 3 of 4
        "list": {"folder:str"},                            # 0 of 4
    }
    assert nearest_shape(cur, known) == ("reply", 0.75)
    assert jaccard(cur, known["send"]) == 0.5
    # equal similarity: the more frequent successor wins, then the smaller node id
    tie = {"b": {"x"}, "a": {"x"}, "c": {"x"}}
    assert nearest_shape({"x", "y"}, tie, {"c": 3.0, "b": 3.0})[0] == "b"
    assert nearest_shape({"x", "y"}, tie)[0] == "a"
    assert nearest_shape(cur, {}) is None
    assert shape_diff(cur, known["send"]) == (("bcc:str",), ("body:str",))


def test_key_paths_cover_maps_arrays_and_empty_containers() -> None:
    skel = skeleton({"items": [{"sku_1": {"qty": 1}}, {"sku_2": {"qty": 2}}], "meta": {},
                     "tags": [], "n": None})
    assert key_paths(skel) == ["items[].*.qty:num", "meta{}", "n:null", "tags[]"]
    lab = label_of("s", "a", {"x\u202e<b>": 1})  # shown keys are cleaned
    assert lab.paths == ("x\\u202e:num",)
    # what a person cannot see is written out, never dropped: a key "to" + zero-width space is
    # not shown as the learned "to" to the person deciding on it (round 9)
    assert label_of("s", "a", {"to\u200b": "x", "to": "y"}).paths == ("to:str", "to\\u200b:str")
    # round 10: default-ignorable characters, a real backslash and the label's delimiters
    assert label_of("s", "a", {"to\ufe0f": 1}).paths == ("to\\ufe0f:num",)
    assert label_of("s", "a", {"to\\u200b": 1}).paths == ("to\\\\u200b:num",)
    assert label_of("s", "a", {"id:num, to": 1}).paths == ("id\\:num\\, to:num",)


def test_threshold_basis_follows_the_configured_floor_and_fallback() -> None:
    p = EngineParams(floor_bits=10.0, fallback_bits=11.0)
    assert [threshold_basis(t, p) for t in (10.0, 11.0004, 12.5)] == [
        "floor", "fallback", "window"]


def test_threshold_basis_names_the_escape_floor_only_for_a_back_off_score() -> None:
    p = EngineParams(floor_bits=12.0, fallback_bits=12.0, escape_floor_bits=14.0)
    assert threshold_basis(14.0, p, backoff=True) == "escape_floor"
    # the default ceiling is the escape floor: a statistic cut to 14 reads as the ceiling
    assert threshold_basis(14.0, p) == "ceiling"
    assert threshold_basis(14.0, p.replace(ceiling_bits=18.0)) == "window"  # a statistic of 14
    assert threshold_basis(12.0, p, backoff=True) == "floor"
    # an escape floor under the floor is never the threshold
    low = p.replace(escape_floor_bits=10.0)
    assert threshold_basis(10.0, low, backoff=True) == "window"


def _verdict(**over: Any) -> Verdict:
    base = Verdict(
        event_id="e1", agent_id="a", run_id="r", chain="p/a/mail", mode="locked",
        anomalous=True, score=19.93, threshold=12.0,
        edge=Edge("n_list", "n_export", 0.0, 0.0, 12.0), action="pause",
        reasons=(Reason("markov", "pause", {"p": 0.0, "new_node": True,
                                            "threshold_from": "floor"}),
                 Reason("guardrail", "flag", {"rule": "pii.email", "paths": ["to"]})),
        decided_at=1.0, project_id="p", chain_tag="t")
    return dataclasses.replace(base, **over)


def test_explanation_words_name_the_calls_the_paths_and_the_rules() -> None:
    labels = {
        "n_list": NodeLabel("mail", "mail.list", ("folder:str",), 1),
        "n_export": NodeLabel("mail", "mail.export", ("forward_to:str", "id:str"), 2),
        "n_read": NodeLabel("mail", "mail.read", ("headers:bool", "id:str"), 2),
        "n_del": NodeLabel("mail", "mail.delete", ("id:num",), 1),
    }
    e = explain(_verdict(), labels, {"n_read": 9.0, "n_del": 3.0, "$": 1.0}, EngineParams())
    assert e.nearest is not None and e.nearest.node == "n_read" and e.nearest.compared == 2
    assert (e.nearest.new_paths, e.nearest.missing_paths) == (("forward_to:str",),
                                                              ("headers:bool",))
    text = render_text(e)
    assert ("verdict: PAUSE — decided by the Markov chain; weaker, not deciding: guardrail "
            "pii.email → flag") in text
    assert "previous call: mail mail.list {folder:str}" in text
    assert "a shape this chain never saw" in text
    assert "guardrail pii.email → flag: paths=[\"to\"]" in text
    assert "a JSON array" not in text
    assert "threshold: the floor, 12 bits" in text and "mode: locked" in text


def test_explanation_without_labels_or_successors_says_why() -> None:
    e = explain(_verdict(), {}, {}, EngineParams())
    assert e.nearest is None and "no stored label" in e.nearest_note
    e2 = explain(_verdict(), {"n_export": NodeLabel("m", "x", ("a:str",), 1)}, {},
                 EngineParams())
    assert e2.nearest_note == "no other call was ever seen after the previous one"


@pytest.mark.parametrize(("action", "kind"), [("allow", "fail-open"), ("pause", "fail-closed")])
def test_an_engine_error_is_never_called_a_detection(action: str, kind: str) -> None:
    v = _verdict(action=action, anomalous=False, reasons=(), error="internal error: KeyError")
    text = render_text(explain(v, {}, {}, EngineParams()))
    assert "NOT A DETECTION" in text and kind in text and "decided by" not in text


def test_a_chain_that_enforces_nothing_is_not_credited_with_the_verdict() -> None:
    """A shadow chain finds a repeat anomalous (its own action allow) while the loop guardrail
    pauses: the verdict is the guardrail's, and a score under the threshold is not called
    anomalous by the threshold."""
    v = _verdict(mode="shadow", score=-1.4e-06, reasons=(
        Reason("markov", "allow", {"p": 1.0, "repeats": 9, "repeat_limit": 5,
                                   "threshold_from": "floor"}),
        Reason("guardrail:loop", "pause", {"rule": "loop.same_node"})))
    e = explain(v, {}, {}, EngineParams())
    assert e.markov_action == "allow" and e.to_dict()["markov_action"] == "allow"
    text = render_text(e)
    assert "verdict: PAUSE — decided by guardrail loop.same_node; the Markov chain found it " \
           "anomalous but enforces nothing in shadow" in text
    assert "→ 0.00 bits;" in text and "-0.00" not in text
    assert "under it, but ANOMALOUS (see the notes)" in text
    assert "repeats of this action back to back: 9" in text
    # a locked chain that acts is credited, as before
    assert "decided by the Markov chain" in render_text(explain(_verdict(), {}, {}, EngineParams()))


def test_a_weaker_markov_reason_is_not_credited_with_a_guardrail_pause() -> None:
    """A locked agent's first call to a new service: the chain flags, a pattern rule pauses —
    the verdict is the guardrail's alone."""
    v = _verdict(mode="shadow", reasons=(
        Reason("markov", "flag", {"p": 0.0, "new_node": True, "threshold_from": "floor"}),
        Reason("guardrail:pattern", "pause", {"rule": "pattern.sql-write"})))
    text = render_text(explain(v, {}, {}, EngineParams()))
    assert ("verdict: PAUSE — decided by guardrail pattern.sql-write; weaker, not deciding: "
            "the Markov chain → flag") in text
    assert "decided by the Markov chain" not in text


def test_a_markov_reason_tied_with_a_guardrail_shares_the_credit() -> None:
    v = _verdict(reasons=(Reason("markov", "pause", {"threshold_from": "floor"}),
                          Reason("guardrail:pii", "pause", {"rule": "pii.email"})))
    text = render_text(explain(v, {}, {}, EngineParams()))
    assert "verdict: PAUSE — decided by the Markov chain, guardrail pii.email\n" in text


def test_guardrail_facts_show_arrays_cleaned_and_cut() -> None:
    """A reason's paths read as the paths, not "a JSON array"; client text stays safe."""
    paths = ["amount", "<b>note</b>", *(f"items[{i}].x" for i in range(10))]
    v = _verdict(reasons=(Reason("guardrail:value", "pause",
                                 {"rule": "value.amount", "paths": paths, "count": 2}),))
    text = render_text(explain(v, {}, {}, EngineParams()))
    line = next(x for x in text.splitlines() if x.startswith("guardrail value.amount"))
    assert line.startswith('guardrail value.amount → pause: count=2, paths=["amount", "note", ')
    assert "… 4 more]" in line and "<" not in line


def test_a_score_over_the_threshold_that_is_not_anomalous_says_why() -> None:
    """No Markov reason, 19.93 bits over a 12-bit threshold: on an unlearnable chain an unseen
    move between known shapes is no evidence (docs/detection.md, "The rule")."""
    v = _verdict(anomalous=False, action="allow", mode="shadow", reasons=(),
                 edge=Edge("n_list", "n_export", 0.0, 0.0, 40.0))
    e = explain(v, {}, {}, EngineParams(), chain_now={"mode": "shadow", "runs": 1,
                                                      "unlearnable": True})
    text = render_text(e)
    assert "19.93 bits; threshold 12.00 bits → over it, but not anomalous (see why below)" in text
    assert ("why not anomalous: not judged: on an unlearnable chain (its rate of new transitions "
            "over novelty_limit, 0.05) an unseen move between shapes it knows is no evidence"
            in text)
    assert "(the chain is unlearnable now)" in text
    assert "chain now: shadow, 1 run, unlearnable" in text and "1 runs" not in text
    # back-off off: a from-node left fewer than min_support times judges only new shapes
    thin = EngineParams(backoff_weight=0.0)
    text = render_text(explain(dataclasses.replace(v, edge=Edge("a", "b", 0.0, 0.0, 3.0)), {},
                               {}, thin, chain_now={"mode": "shadow", "runs": 2}))
    assert "left only 3 times, under min_support (20) with the back-off off" in text
    assert "chain now: shadow, 2 runs" in text
    # under the threshold: nothing to explain
    calm = dataclasses.replace(v, score=3.0)
    assert "why not anomalous" not in render_text(explain(calm, {}, {}, EngineParams()))
