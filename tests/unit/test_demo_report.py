"""The demo summary's account of false runs: by archetype, cause (edge kind or rule) and mode."""

from __future__ import annotations

from typing import Any

from models.verdict import Edge, Reason, Verdict
from ratchet.sandbox.demo_report import SentEvent, build_report, false_cause


def _verdict(event_id: str, agent: str, run: str, action: str = "allow", mode: str = "locked",
             reasons: tuple[Reason, ...] = ()) -> Verdict:
    return Verdict(event_id, agent, run, f"demo/{agent}/crm", mode, bool(reasons), 0.0, 12.0,
                   Edge("a", "b", 0.5, 1.0, 2.0), action, reasons, 0.0)


def _markov(action: str, **detail: Any) -> Reason:
    return Reason("markov", action, {"new_node": False, "seen": 0.0, **detail})


def test_false_cause_names_the_edge_kind_or_the_rule() -> None:
    pause = "pause"
    assert false_cause(_verdict("e", "a", "r", pause, reasons=(_markov(pause, new_node=True),))) \
        == "markov: new node"
    assert false_cause(_verdict("e", "a", "r", pause, reasons=(_markov(pause),))) \
        == "markov: unseen edge"
    assert false_cause(_verdict("e", "a", "r", pause, reasons=(_markov(pause, seen=2.0),))) \
        == "markov: rare edge"
    # the reason that set the action counts, not a milder one listed first
    both = (_markov("flag"), Reason("guardrail:loop", pause, {"rule": "loop.same_node"}))
    assert false_cause(_verdict("e", "a", "r", pause, reasons=both)) \
        == "guardrail:loop: loop.same_node"


def test_false_runs_count_each_normal_enforced_run_once_by_its_first_enforced_event() -> None:
    sent, verdicts = [], {}

    def add(eid: str, agent: str, run: str, label: bool, v: Verdict, scored: bool = True) -> None:
        sent.append(SentEvent(eid, agent, run, label, scored))
        verdicts[eid] = [v]

    flag = "flag"
    # a normal support run enforced twice: counted once, by its first enforced event
    add("1", "support-1", "r1", False, _verdict("1", "support-1", "r1"))
    add("2", "support-1", "r1", False, _verdict("2", "support-1", "r1", flag, "soft_lock",
                                                  (_markov(flag),)))
    add("3", "support-1", "r1", False, _verdict("3", "support-1", "r1", flag, "locked",
                                                  (_markov(flag, new_node=True),)))
    # an anomalous run (its label comes after the enforced event): not a false run
    add("4", "assistant-2", "r2", False, _verdict("4", "assistant-2", "r2", flag, "locked",
                                                    (_markov(flag),)))
    add("5", "assistant-2", "r2", True, _verdict("5", "assistant-2", "r2"))
    # a normal assistant run enforced by a guardrail; and a warm-up run, not scored
    add("6", "assistant-2", "r3", False, _verdict(
        "6", "assistant-2", "r3", "pause", "shadow",
        (Reason("guardrail:pii", "pause", {"rule": "pii.email"}),)))
    add("7", "coding-1", "r4", False, _verdict("7", "coding-1", "r4", flag, "locked",
                                               (_markov(flag),)), scored=False)
    rep = build_report(sent, verdicts, latencies_s=[], seconds=1.0)
    assert rep.enforced_runs is not None and rep.enforced_runs.fp == 2
    assert rep.false_runs == {
        "archetype": {"support": 1, "assistant": 1},
        "cause": {"markov: unseen edge": 1, "guardrail:pii: pii.email": 1},
        "mode": {"soft_lock": 1, "shadow": 1},
    }
    assert "false runs (2) by cause:" in rep.render()
    # the anomalous run r2 was enforced; nothing else anomalous was scored
    assert rep.missed_runs == {}
    add("8", "finance-1", "r5", True, _verdict("8", "finance-1", "r5"))
    rep = build_report(sent, verdicts, latencies_s=[], seconds=1.0)
    assert rep.missed_runs == {"finance": 1}
    assert "missed anomalous runs (1) by archetype: finance 1" in rep.render()
    assert rep.as_dict()["detection_post_warmup"]["false_runs"]["mode"] == {
        "soft_lock": 1, "shadow": 1}
