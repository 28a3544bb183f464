"""benchmarks.outside_traffic: the generator is deterministic and labels what it injects; the
analysis computes the run-level recall and FPR (no Redis: the replay is not run here)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from benchmarks.outside_traffic import (
    KINDS,
    Event,
    RunMeta,
    analyse,
    analyse_and_report,
    event_line,
    generate,
    run_line,
)

Generated = tuple[list[Event], list[RunMeta]]


@pytest.fixture(scope="module")
def small() -> Generated:
    return generate(4242, 20, 5)


@pytest.fixture(scope="module")
def larger() -> Generated:
    return generate(11, 80, 20)


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def test_same_seed_same_events_other_seed_other_events(small: Generated) -> None:
    events, runs = small
    again_events, again_runs = generate(4242, 20, 5)
    assert again_events == events and again_runs == runs
    other_events, other_runs = generate(4243, 20, 5)
    assert other_events != events
    assert [e["event_id"] for e in other_events[:50]] != [e["event_id"] for e in events[:50]]
    assert [r["run_id"] for r in other_runs] != [r["run_id"] for r in runs]


def test_files_are_those_of_the_original_generator(small: Generated) -> None:
    """sha256 of what the original ``gen.py --seed 4242 --runs 20 --warmup 5`` wrote: any change
    to the order of the random draws (or to the serialisation) changes every later event."""
    events, runs = small
    assert len(events) == 4925 and len(runs) == 480
    assert _digest([event_line(e) for e in events]) == (
        "880e9e32f63a21e663d41796232ca2132a28290bbeedeeb25ab5428f11bd6983")
    assert _digest([run_line(r) for r in runs]) == (
        "31a51c4be54cfb2615c31b3d2c6c9cb0264a3327c5bfa1c6b3b9de918de647a8")


def test_event_line_is_compact_with_label_last(small: Generated) -> None:
    line = event_line(small[0][0])
    assert ", " not in line.split('"payload"')[0] and line.endswith(',"label":false}')
    assert list(json.loads(line))[:2] == ["event_id", "project_id"]


def test_anomalous_runs_have_labelled_events_and_normal_runs_none(larger: Generated) -> None:
    events, runs = larger
    labelled: Counter[str] = Counter(e["run_id"] for e in events if e["label"])
    per_run: Counter[str] = Counter(e["run_id"] for e in events)
    anomalous = [r for r in runs if r["kind"]]
    assert len(anomalous) >= 20, "the fixture should hold a fair number of anomalies"
    assert {r["kind"] for r in anomalous} <= set(KINDS)
    for r in runs:
        assert per_run[r["run_id"]] == r["n"]
        if r["kind"]:
            assert r["idx"] >= 20, "no anomaly during the warm-up"
            assert labelled[r["run_id"]] >= 1, r
        else:
            assert labelled[r["run_id"]] == 0, r
    ends = Counter(e["run_id"] for e in events if e.get("end_of_run"))
    assert set(ends.values()) == {1} and len(ends) == len(runs)
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


# --------------------------------------------------------------------------- analysis

def _ev(eid: str, run: str, label: bool = False, service: str = "svc") -> dict[str, Any]:
    return {"event_id": eid, "run_id": run, "label": label, "service": service, "action": "act"}


def _v(eid: str, action: str = "allow", *, mode: str = "locked", anomalous: bool = False,
       source: str = "markov") -> dict[str, Any]:
    reasons = [] if action == "allow" else [{"source": source, "action": action, "detail": {}}]
    return {"event_id": eid, "action": action, "mode": mode, "anomalous": anomalous,
            "reasons": reasons}


def _run(run_id: str, arch: str, idx: int, kind: str | None = None,
         rare: list[str] | None = None) -> RunMeta:
    return {"run_id": run_id, "agent_id": f"{arch}-1", "arch": arch, "idx": idx, "kind": kind,
            "rare": rare or [], "n": 1}


#: warm-up 1: w0 is left out; a1..a3 anomalous, n1..n4 normal.
RUNS = [
    _run("w0", "support", 0),                                  # warm-up: its reject is ignored
    _run("a1", "support", 1, "destructive"),                   # paused on its labelled event
    _run("a2", "code", 2, "loop_short"),                       # flagged on an unlabelled event
    _run("a3", "code", 3, "unknown_service"),                  # missed
    _run("n1", "support", 1),                                  # false positive: flag
    _run("n2", "code", 2),
    _run("n3", "code", 3, rare=["drift"]),                     # false positive: reject
    _run("n4", "code", 4),
]
EVENTS_VERDICTS = [
    (_ev("e0", "w0"), _v("e0", "reject")),
    (_ev("e1", "a1"), _v("e1")),
    (_ev("e2", "a1", label=True, service="crm"), _v("e2", "pause")),
    (_ev("e3", "a2", label=True), _v("e3")),
    (_ev("e4", "a2"), _v("e4", "flag", mode="shadow")),
    (_ev("e5", "a3", label=True), _v("e5", mode="learning")),
    (_ev("e6", "n1", service="kb"), _v("e6", "flag")),
    (_ev("e7", "n2"), _v("e7")),
    (_ev("e8", "n3", service="k8s"), _v("e8", "reject", source="guardrail")),
    (_ev("e9", "n4"), _v("e9")),
]


def _analyse() -> tuple[Any, str]:
    events = [e for e, _ in EVENTS_VERDICTS]
    verdicts = [v for _, v in EVENTS_VERDICTS]
    return analyse_and_report(events, verdicts, RUNS, warmup=1)


def test_recall_and_fpr_computed_by_hand() -> None:
    figures = analyse([e for e, _ in EVENTS_VERDICTS], [v for _, v in EVENTS_VERDICTS], RUNS, 1)
    # 3 anomalous runs: a1 (pause, on its label), a2 (flag), a3 (nothing)
    assert figures["recall_overall"] == {"ALL anomalous": {
        "n": 3, "any": 0.6667, "pause_reject": 0.3333, "flag": 0.3333,
        "on_labelled_event": 0.3333}}
    # 4 normal runs after warm-up (w0 is not one): n1 (flag), n3 (reject)
    assert figures["fpr_overall"] == {"ALL normal": {
        "n": 4, "any": 0.5, "pause_reject": 0.25, "flag": 0.25, "on_labelled_event": 0.0}}
    assert figures["recall_arch"]["support"]["any"] == 1.0
    assert figures["recall_arch"]["code"] == {
        "n": 2, "any": 0.5, "pause_reject": 0.0, "flag": 0.5, "on_labelled_event": 0.0}
    assert {k: r["any"] for k, r in figures["recall_kind"].items()} == {
        "destructive": 1.0, "loop_short": 1.0, "unknown_service": 0.0}
    assert {k: (r["n"], r["any"]) for k, r in figures["fpr_variant"].items()} == {
        "drift": (1, 1.0), "plain": (3, 0.3333)}
    assert {k: (r["n"], r["any"]) for k, r in figures["fpr_arch"].items()} == {
        "code": (3, 0.3333), "support": (1, 1.0)}
    assert {k: (r["n"], r["any"]) for k, r in figures["fpr_arch_plain"].items()} == {
        "code": (2, 0.0), "support": (1, 1.0)}
    assert figures["fpr_time"] == {"early": figures["fpr_overall"]["ALL normal"]}


def test_report_names_first_offenders_and_misses() -> None:
    _, report = _analyse()
    lines = report.splitlines()
    assert "anomalous runs where a *labelled* event got non-allow: 1/3" in lines
    assert "1 ('support', 'locked', 'markov', 'kb:act')" in lines
    assert "1 ('code', 'locked', 'guardrail', 'k8s:act')" in lines
    # plain normal runs only (n3 has drift): the Markov reason split by what it saw
    assert "1 ('support', 'markov:unseen/rare_edge()', 'kb:act')" in lines
    assert "1 ('unknown_service', 'code', 'learning', 'not_anomalous')" in lines
    assert "ALL anomalous                     3   0.667     0.333   0.333    0.333" in lines


def test_misaligned_verdicts_are_refused() -> None:
    events = [e for e, _ in EVENTS_VERDICTS]
    verdicts = [v for _, v in EVENTS_VERDICTS]
    with pytest.raises(ValueError, match="same order"):
        analyse(events, [verdicts[1], verdicts[0], *verdicts[2:]], RUNS, 1)
    with pytest.raises(ValueError):
        analyse(events, verdicts[:-1], RUNS, 1)
