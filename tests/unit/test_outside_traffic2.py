"""benchmarks.outside_traffic2: the generator is deterministic, writes what the original
``gen.py`` wrote and labels what it injects; the analysis computes the run-level recall and FPR
(no Redis: the replay is not run here)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from benchmarks.outside_traffic2 import (
    ARCH,
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
    return generate(4242, 100, 20)


@pytest.fixture(scope="module")
def anomalous() -> Generated:
    """Many anomalies: half the runs after a warm-up of 5."""
    return generate(11, 61, 5, anomaly_rate=0.5)


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def test_same_seed_same_events_other_seed_other_events(small: Generated) -> None:
    events, runs = small
    again_events, again_runs = generate(4242, 100, 20)
    assert again_events == events and again_runs == runs
    assert _digest([event_line(e) for e in again_events]) == _digest(
        [event_line(e) for e in events])
    other_events, other_runs = generate(4243, 100, 20)
    assert _digest([event_line(e) for e in other_events]) != _digest(
        [event_line(e) for e in events])
    assert [r["run_id"] for r in other_runs] != [r["run_id"] for r in runs]


def test_files_are_those_of_the_original_generator(small: Generated) -> None:
    """sha256 of what the original ``gen.py --seed 4242 --runs 100`` wrote with its ``WARMUP``
    constant set to 20: any change to the order of the random draws (or to the serialisation)
    changes every later event. (Its default, ``--seed 2025``, is md5 735337cc... for the events:
    checked by hand, too slow for a unit test.)"""
    events, runs = small
    assert len(events) == 23835 and len(runs) == 2183
    assert sum(1 for r in runs if r["kind"]) == 80
    assert _digest([event_line(e) for e in events]) == (
        "e0a7c7ae4f94fbfc6d9fe1a8d76afac3cc0300db0eb7a69a66e6888b0d12fff4")
    assert _digest([run_line(r) for r in runs]) == (
        "7c02105fcf1a0f3018783fd2dee8da40dfff6c22d29c889a24219578c2007cce")


def test_event_line_is_compact_in_the_original_key_order(small: Generated) -> None:
    events = small[0]
    line = event_line(events[0])
    assert ", " not in line.split('"payload"')[0]
    assert list(json.loads(line))[:5] == ["event_id", "agent_id", "run_id", "service", "action"]
    with_priority = next(e for e in events if "priority" in e)
    keys = list(json.loads(event_line(with_priority)))
    assert keys[5:10] == ["payload", "ts", "project_id", "label", "priority"]


def test_anomalous_runs_have_labelled_events_and_normal_runs_none(anomalous: Generated) -> None:
    events, runs = anomalous
    labelled: Counter[str] = Counter(e["run_id"] for e in events if e["label"])
    per_run: Counter[str] = Counter(e["run_id"] for e in events)
    bad = [r for r in runs if r["kind"]]
    assert len(bad) >= 300, "the fixture should hold a fair number of anomalies"
    assert {r["kind"] for r in bad} == set(KINDS), "every kind drawn at least once"
    assert any(r["recurring"] for r in bad) and not all(r["recurring"] for r in bad)
    label_ids = {e["event_id"] for e in events if e["label"]}
    for r in runs:
        assert per_run[r["run_id"]] == r["n_events"]
        if r["kind"]:
            assert r["idx"] >= 5, "no anomaly during the warm-up"
            assert labelled[r["run_id"]] >= 1, r
            assert len(r["labelled"]) == labelled[r["run_id"]]
            assert set(r["labelled"]) <= label_ids
            assert r["occurrence"] is not None and r["occurrence"] >= 1
        else:
            assert labelled[r["run_id"]] == 0, r
            assert r["labelled"] == [] and r["occurrence"] is None and not r["recurring"]
    # occurrences count an agent's runs of a kind, in order
    seen: Counter[tuple[str, str]] = Counter()
    for r in runs:
        if r["kind"]:
            seen[(r["agent"], r["kind"])] += 1
            assert r["occurrence"] == seen[(r["agent"], r["kind"])]
    # end_of_run: once per run, on its last event, except for the archetypes that never send it
    ends = Counter(e["run_id"] for e in events if e.get("end_of_run"))
    for r in runs:
        assert ends[r["run_id"]] == (1 if ARCH[r["arch"]].end else 0), r
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)


def test_a_run_where_the_original_raised_is_generated() -> None:
    """``gen.py`` drew ``arg_type_change`` for a run whose calls all had empty payloads and then
    raised IndexError (seed 6 here); the kind is now redrawn for such a run."""
    events, runs = generate(6, 61, 5, anomaly_rate=0.5)
    labelled = Counter(e["run_id"] for e in events if e["label"])
    assert all(labelled[r["run_id"]] for r in runs if r["kind"])


# --------------------------------------------------------------------------- analysis

def _ev(eid: str, run: str, label: bool = False, action: str = "act") -> dict[str, Any]:
    return {"event_id": eid, "run_id": run, "label": label, "action": action,
            "payload": {"x": 1}}


def _v(eid: str, action: str = "allow", *, chain: str, mode: str = "locked",
       reason: dict[str, Any] | None = None) -> dict[str, Any]:
    reasons = [] if action == "allow" else [
        reason or {"source": "markov", "action": action, "detail": {"p": 0.0}}]
    return {"event_id": eid, "action": action, "mode": mode, "chain": chain,
            "anomalous": action != "allow", "score": 3.5, "threshold": 12.0,
            "edge": {"p": 0.25, "count": 3.0, "from_total": 12.0}, "reasons": reasons}


def _run(run_id: str, agent: str, idx: int, kind: str | None = None, *, tags: list[str] | None =
         None, recurring: bool = False, drift_at: int | None = None, start: float = 0.0,
         ) -> RunMeta:
    return {"run_id": run_id, "agent": agent, "arch": agent.split("-")[0], "idx": idx,
            "tags": tags or [], "kind": kind, "recurring": recurring,
            "occurrence": 1 if kind else None, "labelled": [], "n_events": 1,
            "drift_at": drift_at, "start": start}


C1, P1, F1, F2 = "p/claims-1/claims", "p/claims-1/payments", "p/chat-1/files", "p/claims-2/fraud"
IBAN = {"source": "guardrail:pii", "action": "flag", "detail": {"rule": "pii.iban"}}
ESCAPE = {"source": "markov", "action": "pause",
          "detail": {"new_node": True, "backoff": "a shape never seen for its action"}}

#: warm-up 1: w0 is left out; a1..a3 anomalous, n1..n4 normal.
RUNS = [
    _run("w0", "claims-1", 0, start=0),                       # warm-up: its reject is ignored
    _run("a1", "claims-1", 1, "dup_payment", recurring=True, start=1),  # paused on its label
    _run("a2", "chat-1", 2, "short_loop", start=2),           # flagged on an unlabelled event
    _run("a3", "chat-1", 3, "extra_fields", start=3),         # missed
    _run("n1", "claims-1", 2, tags=["loop"], start=4),        # false positive: flag (IBAN)
    _run("n2", "chat-1", 4, start=5),
    _run("n3", "claims-2", 5, tags=["drift"], drift_at=1, start=6),  # false positive: pause
    _run("n4", "claims-2", 6, tags=["rare"], drift_at=1, start=7),
]
EVENTS_VERDICTS = [
    (_ev("e0", "w0"), _v("e0", "reject", chain=C1, mode="shadow")),
    (_ev("e1", "a1"), _v("e1", chain=C1)),
    (_ev("e2", "a1", label=True, action="payout"), _v("e2", "pause", chain=P1)),
    (_ev("e3", "a2", label=True), _v("e3", chain=F1, mode="soft_lock")),
    (_ev("e4", "a2"), _v("e4", "flag", chain=F1, mode="soft_lock")),
    (_ev("e5", "a3", label=True, action="calendar.list"), _v("e5", chain=F1, mode="soft_lock")),
    (_ev("e6", "n1", action="payout"), _v("e6", "flag", chain=P1, reason=IBAN)),
    (_ev("e7", "n2"), _v("e7", chain=F1)),
    (_ev("e8", "n3", action="fraud.score"), _v("e8", "pause", chain=F2, reason=ESCAPE)),
    (_ev("e9", "n4"), _v("e9", chain=F2)),
]
EVENTS = [e for e, _ in EVENTS_VERDICTS]
VERDICTS = [v for _, v in EVENTS_VERDICTS]


def _row(anom: int, rec: tuple[float, float, float] | None, normal: int,
         fpr: tuple[float, float] | None) -> dict[str, Any]:
    return {"anom": anom, "recall_any": rec and rec[0], "recall_enforced": rec and rec[1],
            "recall_hit": rec and rec[2], "normal": normal, "fpr_any": fpr and fpr[0],
            "fpr_enforced": fpr and fpr[1]}


def test_recall_and_fpr_computed_by_hand() -> None:
    figures = analyse(EVENTS, VERDICTS, RUNS, 1)
    # 3 anomalous runs: a1 (pause on its label), a2 (flag elsewhere), a3 (nothing);
    # 4 normal runs after warm-up (w0 is not one): n1 (flag), n3 (pause)
    assert figures["overall"] == {
        "ALL": _row(3, (2 / 3, 1 / 3, 1 / 3), 4, (0.5, 0.25)),
        "ALL except chat": _row(1, (1.0, 1.0, 1.0), 3, (2 / 3, 1 / 3)),
    }
    assert figures["arch"] == {
        "arch=chat": _row(2, (0.5, 0.0, 0.0), 1, (0.0, 0.0)),
        "arch=claims": _row(1, (1.0, 1.0, 1.0), 3, (2 / 3, 1 / 3)),
    }
    assert figures["agent"]["agent=claims-2 drift@1"] == _row(0, None, 2, (0.5, 0.5))
    assert set(figures["agent"]) == {
        "agent=chat-1 drift@None", "agent=claims-1 drift@None", "agent=claims-2 drift@1"}
    assert figures["kind"] == {
        "dup_payment": _row(1, (1.0, 1.0, 1.0), 0, None),
        "extra_fields": _row(1, (0.0, 0.0, 0.0), 0, None),
        "short_loop": _row(1, (1.0, 0.0, 0.0), 0, None),
    }
    assert {k: (r["normal"], r["fpr_any"], r["fpr_enforced"])
            for k, r in figures["variant"].items()} == {
        "drift(first 50 runs after onset)": (1, 1.0, 1.0),
        "loop(pagination/poll/retry)": (1, 1.0, 0.0),
        "plain": (1, 0.0, 0.0),
        "rare_branch": (1, 0.0, 0.0),
        "normal runs of agents w/o drift": (2, 0.5, 0.0),
        "normal, no drift tag, no rare, no jitter": (2, 0.5, 0.0),
    }
    assert figures["recurring"]["recurring: occurrence 1"] == _row(1, (1.0, 1.0, 1.0), 0, None)
    assert figures["recurring"]["one-off (non-recurring)"] == _row(2, (0.5, 0.0, 0.0), 0, None)
    assert figures["recurring"]["  rec dup_payment later"] == _row(0, None, 0, None)
    assert figures["warmup"] == 1 and figures["invalid_lines"] == 0


def test_report_tables_causes_misses_and_modes() -> None:
    _, report = analyse_and_report(EVENTS, VERDICTS, RUNS, 1)
    lines = report.splitlines()
    assert lines[0] == "# invalid/error lines: 0"
    assert ("| ALL                                |     3 |  66.7% |  33.3% |  33.3% |      4 |"
            "  50.0% |  25.0% |") in lines
    assert ("| dup_payment                        |     1 | 100.0% | 100.0% | 100.0% |      0 |"
            "    -  |    -  |") in lines
    assert "## False-positive causes (2 normal runs with a non-allow verdict of 4)" in lines
    assert "| guardrail:pii.iban | 1 (25.0% of normal) | 1 |" in lines
    assert "| markov:new_shape_for_action(escape) | 1 (25.0% of normal) | 1 |" in lines
    assert "| claims-2 | fraud.score | markov:new_shape_for_action(escape) | 1 | 1 |" in lines
    assert "| extra_fields | 1 | 1 |" in lines
    assert "  sequence: [calendar.list]" in lines
    assert ("anomalous runs counted as detected only through a non-labelled event: 1 of 3"
            in report)
    assert "[('short_loop', 1)]" in lines
    assert "| p/chat-1/files | 2 | 4 | locked |" in lines
    assert "| p/claims-1/claims | - | 1 | locked |" in lines


def test_error_lines_are_skipped_and_misaligned_verdicts_refused() -> None:
    verdicts = [{"error": "invalid event"}, *VERDICTS[1:]]
    figures = analyse(EVENTS, verdicts, RUNS, 1)  # e0 (warm-up) had no verdict
    assert figures["invalid_lines"] == 1
    assert figures["overall"]["ALL"]["fpr_any"] == 0.5
    with pytest.raises(ValueError, match="same order"):
        analyse(EVENTS, [VERDICTS[1], VERDICTS[0], *VERDICTS[2:]], RUNS, 1)
    with pytest.raises(ValueError):
        analyse(EVENTS, VERDICTS[:-1], RUNS, 1)
