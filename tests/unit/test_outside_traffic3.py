"""benchmarks.outside_traffic3: the generator is deterministic, writes what the original
``gen.py`` wrote and labels only what it injects; the analysis computes the original's run-level
recall and FPR (no Redis: the replay is not run here)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import pytest

from benchmarks.outside_traffic3 import (
    ARCH,
    KINDS,
    Event,
    RunMeta,
    _agents,
    analyse,
    analyse_and_report,
    event_line,
    generate,
    main,
    run_line,
)

Generated = tuple[list[Event], list[RunMeta]]


@pytest.fixture(scope="module")
def small() -> Generated:
    """60 runs per agent, a warm-up of 10, half the runs after it anomalous."""
    return generate(1, 60, 10, anomaly_rate=0.5)


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()


def test_same_seed_same_traffic_other_seed_other_traffic(small: Generated) -> None:
    events, runs = small
    again_events, again_runs = generate(1, 60, 10, anomaly_rate=0.5)
    assert again_events == events and again_runs == runs
    other_events, other_runs = generate(2, 60, 10, anomaly_rate=0.5)
    assert _digest([event_line(e) for e in other_events]) != _digest(
        [event_line(e) for e in events])
    assert [r["run_id"] for r in other_runs] != [r["run_id"] for r in runs]


def test_files_are_those_of_the_original_generator(small: Generated) -> None:
    """sha256 of what the original ``gen.py`` wrote for ``GEN_SEED=1`` with its ``WARMUP`` set to
    10, ``ANOM_RATE`` to 0.5 and every agent's ``nruns`` to 60 after it was drawn: any change to
    the order of the random draws (or to the serialisation) changes every later event. (Its
    default, seed 77, is md5 91e38ad4edaa4ca01b844befa3267745 for the events and
    7c25721f311cda4375bb8472ed9836a4 for the runs, seed 78 ef999fdf... / d375c7ad...: checked
    by hand, a few seconds.)"""
    events, runs = small
    assert len(events) == 12772 and len(runs) == 1200
    assert sum(1 for r in runs if r["kind"]) == 440
    assert _digest([event_line(e) for e in events]) == (
        "f35bbe53e6b2e02dded89ccc10b496ca1d428bb6b29dd12fa4b0e27f27708ccb")
    assert _digest([run_line(r) for r in runs]) == (
        "397d9b4e086c063ba6b88103bef0871d3a8907da9e57bb0ce7ae26101bc7d05a")


def test_default_agents_are_the_originals() -> None:
    """Seed 77's agents draw the original's run counts (12,072 runs in all) and change points."""
    agents = _agents(77, None)
    assert len(agents) == 20
    assert sum(ctx.nruns for _, _, ctx in agents) == 12072
    assert Counter(arch for _, arch, _ in agents) == {
        "hr_onboarding": 2, "procurement": 3, "customer_refunds": 3, "devops_deploy": 3,
        "data_science": 2, "marketing_email": 2, "legal_review": 2, "general_assistant": 3}
    for _, _, ctx in agents:
        assert 400 <= ctx.nruns <= 800
        assert min(380, ctx.nruns - 60) <= ctx.newfield_at <= ctx.nruns - 40


def test_event_line_is_compact_in_the_original_key_order(small: Generated) -> None:
    events = small[0]
    line = event_line(events[0])
    assert ", " not in line.split('"payload"')[0]
    keys = list(json.loads(line))
    assert keys[:8] == ["event_id", "agent_id", "project_id", "run_id", "service", "action",
                        "payload", "ts"]
    assert keys[-1] == "label"
    paid = next(e for e in events if "priority" in e)
    assert list(json.loads(event_line(paid)))[8:] == ["priority", "label"]
    last = next(e for e in events if "end_of_run" in e and "cost" not in e)
    assert list(json.loads(event_line(last)))[8:] == ["end_of_run", "label"]
    costly = next(e for e in events if "cost" in e)
    assert costly["action"] == "completions.create"


def test_labels_only_on_the_injected_events_of_anomalous_runs(small: Generated) -> None:
    events, runs = small
    labelled: Counter[str] = Counter(e["run_id"] for e in events if e["label"])
    per_run: Counter[str] = Counter(e["run_id"] for e in events)
    bad = [r for r in runs if r["kind"]]
    assert {r["kind"] for r in bad} == set(KINDS), "every kind drawn at least once"
    assert any(r["recurring"] for r in bad) and not all(r["recurring"] for r in bad)
    assert {r["strength"] for r in bad} == {"weak", "medium", "strong"}
    for r in runs:
        assert per_run[r["run_id"]] == r["n_events"]
        if r["kind"]:
            assert r["index"] >= 10, "no anomaly during the warm-up"
            assert labelled[r["run_id"]] >= 1, r
            assert r["occurrence"] >= 1 and r["note"] and r["strength"]
        else:
            assert labelled[r["run_id"]] == 0, r
            assert r["occurrence"] == 0 and not r["recurring"] and not r["note"]
    # a repeat burst labels exactly its extra calls; a type change one call
    burst = next(r for r in bad if r["kind"] == "repeat_burst")
    assert labelled[burst["run_id"]] == int(burst["note"].split(" repeated ")[1].split()[0])
    assert all(labelled[r["run_id"]] == 1 for r in bad if r["kind"] == "type_change")
    # occurrences count an agent's runs of a kind, in order; recurring kinds are 2 per agent
    seen: Counter[tuple[str, str]] = Counter()
    rec_kinds: dict[str, set[str]] = {}
    for r in runs:
        if r["kind"]:
            seen[(r["agent"], r["kind"])] += 1
            assert r["occurrence"] == seen[(r["agent"], r["kind"])]
            if r["recurring"]:
                rec_kinds.setdefault(r["agent"], set()).add(r["kind"])
    assert all(len(k) <= 2 for k in rec_kinds.values())


def test_recurring_attacks_repeat_their_content(small: Generated) -> None:
    events, runs = small
    by_run: dict[str, list[Event]] = {}
    for e in events:
        by_run.setdefault(e["run_id"], []).append(e)
    content: dict[tuple[str, str], set[str]] = {}
    for r in runs:
        if r["recurring"] and r["kind"] == "exfil_new_service":
            injected = [e for e in by_run[r["run_id"]] if e["label"]]
            key = (r["agent"], r["kind"])
            content.setdefault(key, set()).add(json.dumps(injected[0]["payload"]))
    assert content, "some agent has a recurring exfiltration in this traffic"
    assert all(len(v) == 1 for v in content.values())


def test_runs_events_and_normal_variants(small: Generated) -> None:
    events, runs = small
    assert [(e["ts"], e["event_id"]) for e in events] == sorted(
        (e["ts"], e["event_id"]) for e in events)
    ends = Counter(e["run_id"] for e in events if e.get("end_of_run"))
    last = {e["run_id"]: e for e in events}
    for r in runs:
        assert ends[r["run_id"]] == (1 if r["end_of_run"] else 0)
        if r["end_of_run"]:
            assert last[r["run_id"]].get("end_of_run")
        assert r["archetype"] in ARCH
    assert {e["project_id"] for e in events} == {"prj_eval3"}
    assert all(e["priority"] == "high" for e in events if "priority" in e)
    # new optional fields: from the agent's change point on, the named call carries the field
    change_at = {name: ctx.newfield_at for name, _, ctx in _agents(1, 60)}
    by_run: dict[str, list[Event]] = {}
    for e in events:
        by_run.setdefault(e["run_id"], []).append(e)
    drifted = [r for r in runs if r["new_field"] and not r["kind"]]
    assert drifted
    for r in drifted:
        assert r["index"] >= change_at[r["agent"]]
        call, key = r["new_field"].rsplit(".", 1)
        assert any(key in e["payload"] for e in by_run[r["run_id"]]
                   if f"{e['service']}.{e['action']}" == call), r
    assert any(r["rare"] for r in runs)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="runs"):
        generate(1, 59)
    with pytest.raises(SystemExit):
        main(["--runs", "10"])


# --------------------------------------------------------------------------- analysis

def _ev(eid: str, run: str, label: bool = False, svc: str = "svc", act: str = "act",
        ts: float = 0.0) -> dict[str, Any]:
    return {"event_id": eid, "run_id": run, "label": label, "service": svc, "action": act,
            "payload": {"x": 1}, "ts": ts}


NEW_NODE = {"source": "markov", "action": "pause", "detail": {"new_node": True, "p": 0.0}}
ORDER = {"source": "guardrail:order", "action": "flag", "detail": {"rule": "order.unseen"}}
LOOP = {"source": "markov", "action": "flag", "detail": {"seen": 3, "p": 0.25}}


def _v(eid: str, action: str = "allow", *, chain: str, mode: str = "locked",
       reason: dict[str, Any] | None = None) -> dict[str, Any]:
    reasons = [] if action == "allow" else [reason or NEW_NODE]
    return {"event_id": eid, "action": action, "mode": mode, "chain": chain, "score": 3.5,
            "threshold": 12.0, "reasons": reasons}


def _run(run_id: str, agent: str, index: int, kind: str = "", *, strength: str = "",
         note: str = "", recurring: bool = False, rare: str = "", new_field: str = "",
         ) -> RunMeta:
    arch = {"hr": "hr_onboarding", "general": "general_assistant"}[agent.split("-")[0]]
    return {"run_id": run_id, "agent": agent, "archetype": arch, "kind": kind, "index": index,
            "strength": strength, "note": note, "recurring": recurring,
            "occurrence": 1 if kind else 0, "rare": rare, "new_field": new_field,
            "n_events": 1, "end_of_run": True, "start_ts": 0.0}


HR, GA, GA2 = "p/hr-1/hris", "p/general-1/slack", "p/general-1/calendar"

#: warm-up 1: w0 is left out; a1..a3 anomalous, n1..n3 normal.
RUNS = [
    _run("w0", "hr-1", 0),                                            # warm-up: flagged
    _run("a1", "hr-1", 1, "huge_amount", strength="strong",
         note="hris.employees.create amount x1000 -> 5"),              # paused on its label
    _run("a2", "general-1", 1, "repeat_burst", strength="weak", recurring=True,
         note="slack.chat.post repeated 3 extra times"),              # flagged before it only
    _run("a3", "general-1", 2, "prompt_injection", strength="medium",
         note="slack.chat.post.text <- IGNORE ALL", new_field="slack.chat.post.locale"),  # missed
    _run("n1", "hr-1", 2, new_field="hris.employees.create.pronouns"),  # false: paused
    _run("n2", "general-1", 3, rare="reminder_tool"),                 # false: flagged
    _run("n3", "general-1", 4),                                       # plain, allowed
]
EVENTS_VERDICTS = [
    (_ev("e0", "w0", ts=0), _v("e0", "flag", chain=HR, mode="shadow", reason=ORDER)),
    (_ev("e1", "a1", label=True, svc="hris", act="employees.create", ts=1),
     _v("e1", "pause", chain=HR)),
    (_ev("e2", "a2", ts=2), _v("e2", "flag", chain=GA, mode="soft_lock", reason=LOOP)),
    (_ev("e3", "a2", label=True, svc="slack", act="chat.post", ts=3), _v("e3", chain=GA)),
    (_ev("e4", "a3", label=True, svc="slack", act="chat.post", ts=4), _v("e4", chain=GA)),
    (_ev("e5", "n1", svc="hris", act="employees.create", ts=5), _v("e5", "pause", chain=HR)),
    (_ev("e6", "n2", svc="reminders", act="reminders.create", ts=6),
     _v("e6", "flag", chain=GA2, reason=ORDER)),
    (_ev("e7", "n3", ts=7), _v("e7", chain=GA2)),
]
EVENTS = [e for e, _ in EVENTS_VERDICTS]
VERDICTS = [v for _, v in EVENTS_VERDICTS]


def _r(n: int, of: int) -> dict[str, Any]:
    return {"n": n, "of": of, "rate": n / of if of else None}


def test_recall_and_fpr_computed_by_hand() -> None:
    f = analyse(EVENTS, VERDICTS, RUNS, 1)
    assert (f["events"], f["runs"], f["agents"]) == (8, 7, 2)
    assert (f["anomalous_runs"], f["normal_runs"]) == (3, 3)
    assert f["recall_any"] == _r(2, 3)          # a1, a2
    assert f["recall_enforced"] == _r(1, 3)     # a1
    assert f["recall_hit_any"] == _r(1, 3)      # a1 only: a2's flag is before its injection
    assert f["recall_hit_enforced"] == _r(1, 3)
    assert f["recall_at_after_any"] == _r(1, 3)
    assert f["no_new_field"] == {"recall_any": _r(2, 2), "recall_enforced": _r(1, 2),
                                 "hit_any": _r(1, 2), "hit_enforced": _r(1, 2)}
    assert f["fpr_any"] == _r(2, 3)             # n1, n2
    assert f["fpr_enforced"] == _r(1, 3)        # n1
    assert f["warmup_fpr_any"] == _r(1, 1) and f["warmup_fpr_enforced"] == _r(0, 1)
    assert f["precision_any"] == 0.5 and f["precision_enforced"] == 0.5
    assert f["actions_all"] == {"flag": 3, "pause": 2, "allow": 3}
    assert f["actions_after_warmup"] == {"pause": 2, "flag": 2, "allow": 3}
    assert list(f["kind"]) == list(KINDS)
    assert f["kind"]["huge_amount"] == {
        "nominal": "medium", "runs": 1, "recall_any": _r(1, 1), "recall_enforced": _r(1, 1),
        "hit_any": _r(1, 1), "hit_enforced": _r(1, 1), "at_after_any": _r(1, 1)}
    assert f["kind"]["repeat_burst"]["recall_any"] == _r(1, 1)
    assert f["kind"]["repeat_burst"]["hit_any"] == _r(0, 1)
    assert f["kind"]["prompt_injection"]["recall_any"] == _r(0, 1)
    assert f["kind"]["type_change"]["runs"] == 0
    assert f["kind"]["type_change"]["recall_any"] == _r(0, 0)
    assert f["strength"]["strong"]["recall_enforced"] == _r(1, 1)
    assert f["strength"]["medium"]["recall_any"] == _r(0, 1)
    assert f["recurring"] == {
        "1": {"runs": 1, "recall_any": _r(1, 1), "recall_enforced": _r(0, 1)},
        "non-recurring": {"runs": 2, "recall_any": _r(1, 2), "recall_enforced": _r(1, 2)}}
    assert f["archetype"]["general_assistant"] == {
        "agents": 1, "normal": 2, "fpr_any": _r(1, 2), "fpr_enforced": _r(0, 2),
        "anomalous": 2, "recall_any": _r(1, 2), "recall_enforced": _r(0, 2)}
    assert f["agent"]["hr-1"]["runs"] == 3
    assert f["agent"]["hr-1"]["final_modes"] == {"locked": 1}
    assert f["agent"]["general-1"]["final_modes"] == {"locked": 2}
    assert f["normal_group"]["rare legitimate branch"]["fpr_enforced"] == _r(0, 1)
    assert f["normal_group"]["new optional field (after change point)"]["fpr_enforced"] == (
        _r(1, 1))
    assert f["normal_group"]["plain (neither)"]["fpr_any"] == _r(0, 1)
    assert f["new_field"] == {"hris.employees.create.pronouns": {
        "normal": 1, "fpr_any": _r(1, 1), "fpr_enforced": _r(1, 1)}}
    assert f["fpr_by_index"]["0-99"] == {"normal": 4, "fpr_any": _r(3, 4),
                                         "fpr_enforced": _r(1, 4)}
    assert f["missed"] == {"prompt_injection": 1}
    assert f["warmup"] == 1 and f["invalid_lines"] == 0


def test_report_headline_tables_causes_and_misses() -> None:
    _, report = analyse_and_report(EVENTS, VERDICTS, RUNS, 1)
    lines = report.splitlines()
    assert lines[0] == "events: 8; runs: 7; agents: 2"
    assert "run recall (any non-allow): 2/3 = 66.7%" in lines
    assert "run recall (pause/reject): 1/3 = 33.3%" in lines
    assert "FPR (any non-allow): 2/3 = 66.7%" in lines
    assert "FPR (pause/reject): 1/3 = 33.3%" in lines
    assert ("(warm-up runs, all normal: non-allow 1/1 = 100.0%, pause/reject 0/1 = 0.0%)"
            in lines)
    assert ("| huge_amount | medium | 1 | 1/1 100.0% | 1/1 100.0% | 1/1 100.0% | 1/1 100.0% | "
            "1/1 100.0% |") in lines
    assert "| type_change | weak | 0 | 0/0 n/a | 0/0 n/a | 0/0 n/a | 0/0 n/a | 0/0 n/a |" in lines
    assert "| huge_amount | markov (new node) (1) | markov (new node) (1) |" in lines
    assert "| repeat_burst |  | markov (rare edge p=0.250) (1) |" in lines
    assert "| hr-1 | 3 | 1 | 100.0% | 100.0% | 1 | 100.0% | {'locked': 1} |" in lines
    assert "- guardrail:order:order.unseen: 1" in lines
    assert ("| 1 | markov ; hris.employees.create ; new node ; locked | 1 | 1 |  ex. n1 (hr-1, "
            "new_field)") in lines
    assert "### prompt_injection: 1 of 1 missed" in lines
    assert "runs: a3" in lines
    assert any(x.startswith("- a3 agent=general-1 kind=prompt_injection") and
               "injected event e4: slack.chat.post" in x for x in lines)
    assert "- a2 repeat_burst slack.chat.post repeated 3 extra times" in lines


def test_error_lines_are_skipped_and_misaligned_verdicts_refused() -> None:
    verdicts = [{"error": "invalid event"}, *VERDICTS[1:]]
    f, report = analyse_and_report(EVENTS, verdicts, RUNS, 1)  # e0 (warm-up) had no verdict
    assert f["invalid_lines"] == 1
    assert f["warmup_fpr_any"] == _r(0, 1)
    assert f["fpr_any"] == _r(2, 3)
    assert report.startswith("invalid/error verdict lines (their events left out): 1\n")
    with pytest.raises(ValueError, match="same order"):
        analyse(EVENTS, [VERDICTS[1], VERDICTS[0], *VERDICTS[2:]], RUNS, 1)
    with pytest.raises(ValueError):
        analyse(EVENTS, VERDICTS[:-1], RUNS, 1)
