"""The synthetic traffic generator: contract, determinism, labels, interleaving, rates, CLI."""

from __future__ import annotations

import doctest
import itertools
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.errors import ConfigError
from models.events import parse_event
from ratchet.sandbox import traffic
from ratchet.sandbox.traffic import ANOMALY_KINDS, Run, archetypes, generate, iter_events, iter_runs

DEFAULTS: dict[str, Any] = {}  # the documented defaults: 6 agents x 300 runs, 100 warm-up, 5 %


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return generate(**DEFAULTS)


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return list(iter_runs(**DEFAULTS))


# A stand-in for the engine's skeleton (docs/design.md §3), enough to reason about chains here:
# key structure with typed leaves, arrays as sets of element shapes, id-keyed objects as one map.
_ID_KEY = re.compile(r"^([a-z]+_)?[0-9]+$|^[0-9a-f-]{8,}$")


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(_ID_KEY.match(k) for k in value):
            return ("<map>", frozenset(_shape(v) for v in value.values()))
        return tuple(sorted((k, _shape(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("<list>", frozenset(_shape(v) for v in value))
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "num"
    return "null" if value is None else "str"


def _edges(run: Run) -> Iterable[tuple[tuple[str, str], Any, Any, dict[str, Any]]]:
    """((agent, service), previous shape or START, shape, event) for every event of a run."""
    last: dict[str, Any] = {}
    for e in run.events:
        shape = _shape(e["payload"])
        yield (run.agent_id, e["service"]), last.get(e["service"], "START"), shape, e
        last[e["service"]] = shape


# --- contract -----------------------------------------------------------------------------------


def test_every_event_passes_the_ingest_contract(events: list[dict[str, Any]]) -> None:
    for e in events:
        parsed = parse_event(e, allow_offline_fields=True)
        assert parsed.project_id == "demo"
        assert isinstance(e["label"], bool) and parsed.label is e["label"]
        assert e["service"] == e["action"].split(".", 1)[0]
        assert uuid.UUID(e["event_id"]).version == 4
        assert e["cost"] >= 0 and isinstance(e["ts"], float)
    assert len({e["event_id"] for e in events}) == len(events)


def test_archetypes_are_described_and_all_used(events: list[dict[str, Any]]) -> None:
    infos = archetypes()
    assert len(infos) >= 6
    used = {e["agent_id"].rsplit("-", 1)[0] for e in events}
    assert used == {a.name for a in infos}
    for info in infos:
        actions = {
            e["action"]
            for e in events
            if e["agent_id"].startswith(info.name + "-") and not e["label"]
        }
        assert actions <= set(info.actions), info.name
        assert {a.split(".")[0] for a in info.actions} == set(info.services)
        assert info.description and info.rare_branches


def test_within_a_service_each_step_has_its_own_shape(runs: list[Run]) -> None:
    """Chains see shapes, not action names: two steps of one service must not look alike."""
    actions_of: dict[tuple[tuple[str, str], Any], set[str]] = defaultdict(set)
    per_service: Counter[tuple[str, str]] = Counter()
    for run in runs:
        if run.anomaly is None:
            for chain, _, shape, e in _edges(run):
                actions_of[(chain, shape)].add(e["action"])
                per_service[chain] += 1
    assert {k: v for k, v in actions_of.items() if len(v) > 1} == {}
    # every chain gets sequences, not single calls: several calls per service per run on average
    runs_per_agent = Counter(r.agent_id for r in runs)
    assert (
        sum(per_service.values()) / sum(len({e["service"] for e in r.events}) for r in runs) > 2.0
    )
    assert len(runs_per_agent) == 6


def test_high_entropy_agent_has_many_more_shapes(runs: list[Run]) -> None:
    shapes: dict[str, set[Any]] = defaultdict(set)
    for run in runs:
        if run.anomaly is None:
            for e in run.events:
                shapes[run.archetype].add((e["service"], _shape(e["payload"])))
    others = max(len(v) for k, v in shapes.items() if k != "assistant")
    assert len(shapes["assistant"]) > 3 * others


def test_id_keyed_maps_and_varying_arrays_occur(events: list[dict[str, Any]]) -> None:
    queries = [e["payload"] for e in events if e["action"] == "db.query" and e["payload"]["rows"]]
    assert queries and all(all(_ID_KEY.match(k) for k in q["rows"]) for q in queries)
    assert len({len(q["rows"]) for q in queries}) > 5
    assert len({len(e["payload"]["entries"]) for e in events if e["action"] == "ledger.post"}) > 1


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_same_events_other_seed_other_events() -> None:
    def small(seed: int) -> list[dict[str, Any]]:
        return generate(agents=6, runs_per_agent=30, warmup_runs=5, anomaly_rate=0.3, seed=seed)

    a = small(11)
    assert orjson.dumps(a) == orjson.dumps(small(11))
    assert orjson.dumps(a) != orjson.dumps(small(12))
    streamed = iter_events(agents=6, runs_per_agent=30, warmup_runs=5, anomaly_rate=0.3, seed=11)
    assert orjson.dumps(list(streamed)) == orjson.dumps(a)


def test_an_agents_traffic_does_not_depend_on_the_other_agents() -> None:
    two = [
        e
        for e in generate(agents=2, runs_per_agent=20, warmup_runs=5)
        if e["agent_id"] == "coding-1"
    ]
    nine = [
        e
        for e in generate(agents=9, runs_per_agent=20, warmup_runs=5)
        if e["agent_id"] == "coding-1"
    ]
    assert two == nine
    assert {e["agent_id"] for e in generate(agents=8, runs_per_agent=1)} >= {
        "support-2",
        "coding-2",
    }


# --- runs, labels, interleaving -----------------------------------------------------------------


def test_end_of_run_exactly_once_and_last(events: list[dict[str, Any]]) -> None:
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_run[e["run_id"]].append(e)
    assert len(by_run) == 6 * 300
    for evs in by_run.values():
        assert [e["end_of_run"] for e in evs] == [False] * (len(evs) - 1) + [True]


def test_interleaving_keeps_each_run_in_order(
    events: list[dict[str, Any]], runs: list[Run]
) -> None:
    stream: dict[str, list[str]] = defaultdict(list)
    for e in events:
        stream[e["run_id"]].append(e["event_id"])
    assert stream == {r.run_id: [e["event_id"] for e in r.events] for r in runs}
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts)
    for run in runs:
        run_ts = [e["ts"] for e in run.events]
        assert all(a < b for a, b in itertools.pairwise(run_ts))
    # runs really interleave: across agents, and several runs of one agent open at once
    switches = sum(a["run_id"] != b["run_id"] for a, b in itertools.pairwise(events))
    assert switches > 3 * len(runs)
    overlapping = 0
    by_agent: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_agent[run.agent_id].append(run)
    for agent_runs in by_agent.values():
        assert [r.index for r in agent_runs] == list(range(300))  # an agent starts runs in order
        overlapping += sum(
            b.events[0]["ts"] < a.events[-1]["ts"] for a, b in itertools.pairwise(agent_runs)
        )
    assert overlapping > 0.2 * len(runs)


def test_labels_only_after_warm_up_and_only_in_anomalous_runs(runs: list[Run]) -> None:
    for run in runs:
        labels = [e["label"] for e in run.events]
        if run.index < 100:
            assert run.anomaly is None and not any(labels)
        assert run.anomalous == (run.anomaly is not None)
    quiet = generate(agents=6, runs_per_agent=40, warmup_runs=40, anomaly_rate=1.0)
    assert not any(e["label"] for e in quiet)


def test_anomaly_rate_is_roughly_as_configured(runs: list[Run]) -> None:
    late = [r for r in runs if r.index >= 100]
    assert 0.03 < sum(r.anomalous for r in late) / len(late) < 0.07
    heavy = list(iter_runs(agents=6, runs_per_agent=200, warmup_runs=50, anomaly_rate=0.3, seed=3))
    late = [r for r in heavy if r.index >= 50]
    assert 0.25 < sum(r.anomalous for r in late) / len(late) < 0.35
    assert not any(r.anomalous for r in iter_runs(runs_per_agent=150, anomaly_rate=0.0))


def test_every_kind_turns_up_at_a_reasonable_rate(runs: list[Run]) -> None:
    kinds = Counter(r.anomaly for r in runs if r.anomaly)
    assert set(kinds) == set(ANOMALY_KINDS) and len(ANOMALY_KINDS) >= 5
    expected = sum(kinds.values()) / len(ANOMALY_KINDS)
    assert all(0.5 * expected <= n <= 1.5 * expected for n in kinds.values()), kinds


@pytest.fixture(scope="module")
def heavy_runs() -> list[Run]:
    return list(iter_runs(agents=6, runs_per_agent=400, warmup_runs=100, anomaly_rate=0.25, seed=5))


def test_every_archetype_shows_every_kind(heavy_runs: list[Run]) -> None:
    per_agent = {(r.agent_id, r.anomaly) for r in heavy_runs if r.anomaly}
    assert len(per_agent) == 6 * len(ANOMALY_KINDS)


def test_labelled_events_are_unseen_edges_of_their_chain(heavy_runs: list[Run]) -> None:
    """Every injected anomaly but loop abuse makes an edge no normal run of that agent has."""
    seen: set[tuple[Any, Any, Any]] = set()
    for run in heavy_runs:
        if run.anomaly is None:
            seen.update((chain, prev, shape) for chain, prev, shape, _ in _edges(run))
    checked: Counter[str] = Counter()
    for run in heavy_runs:
        if run.anomaly in (None, "loop_abuse"):
            continue
        for chain, prev, shape, e in _edges(run):
            if e["label"]:
                assert (chain, prev, shape) not in seen, (run.run_id, run.anomaly, e["action"])
                checked[run.anomaly] += 1
    assert set(checked) == set(ANOMALY_KINDS) - {"loop_abuse"}


def test_each_kind_labels_what_it_injected(heavy_runs: list[Run]) -> None:
    longest: Counter[tuple[str, str]] = Counter()  # normal runs: longest streak of one action

    def streaks(run: Run) -> Iterable[tuple[str, int]]:
        action, n = "", 0
        for e in run.events:
            action, n = e["action"], (n + 1 if e["action"] == action else 1)
            yield action, n

    for run in heavy_runs:
        if run.anomaly is None:
            for action, n in streaks(run):
                longest[(run.agent_id, action)] = max(longest[(run.agent_id, action)], n)
    loop_tops: list[int] = []
    for run in (r for r in heavy_runs if r.anomaly):
        labelled = [e for e in run.events if e["label"]]
        if run.anomaly == "loop_abuse":
            assert 8 <= len(labelled) <= 45 and len({e["action"] for e in labelled}) == 1
            top = max(n for a, n in streaks(run) if a == labelled[0]["action"])
            normal = longest[(run.agent_id, labelled[0]["action"])]
            assert top > normal  # longer than any normal repetition of that step
            loop_tops.append(top)
        else:
            assert len(labelled) == 1, run.anomaly
        if run.anomaly == "exfiltration":
            assert labelled[0]["action"] == "web.post" and not run.events[-1]["label"]
        if run.anomaly == "shape_drift":
            assert set(labelled[0]["payload"]) & {"debug", "auth_context", "proxy", "callback"}
    # loop strength varies: on both sides of the loop guardrail's default limit (20 back to back)
    under = sum(t <= 20 for t in loop_tops)
    assert 0.15 * len(loop_tops) < under < 0.6 * len(loop_tops), loop_tops


def test_second_block_of_agents_never_sets_a_high_priority() -> None:
    """Anomalies must also land on chains that never see a high-priority call."""
    runs = list(iter_runs(agents=12, runs_per_agent=200, warmup_runs=50, anomaly_rate=0.2, seed=4))
    by_profile: dict[str, Counter[str]] = defaultdict(Counter)
    anomalous: Counter[str] = Counter()
    for run in runs:
        assert run.priorities == ("normal" if run.agent_id.endswith("-2") else "mixed")
        by_profile[run.priorities].update(e["priority"] for e in run.events)
        anomalous[run.priorities] += run.anomalous
    assert by_profile["normal"]["high"] == by_profile["normal"]["critical"] == 0
    assert by_profile["normal"]["low"] > 0  # low stays low
    assert by_profile["mixed"]["high"] > 0 and by_profile["mixed"]["critical"] > 0
    assert anomalous["normal"] > 0.3 * sum(anomalous.values())


def test_rare_legitimate_fields_recur_and_some_appear_only_after_warm_up() -> None:
    runs = list(iter_runs(agents=12, runs_per_agent=400, warmup_runs=150, anomaly_rate=0.1, seed=8))
    rare = {(arch, action, key) for arch, vs in traffic._RARE.items() for action, key, _ in vs}
    first: dict[tuple[str, str], int] = {}
    seen: Counter[tuple[str, str]] = Counter()
    normal_runs = with_rare = 0
    for run in runs:
        hits = {
            (run.agent_id, k)
            for e in run.events
            for k in e["payload"]
            if (run.archetype, e["action"], k) in rare
        }
        for hit in hits:
            first.setdefault(hit, run.index)
            seen[hit] += 1
        if run.anomaly is None:
            normal_runs += 1
            with_rare += bool(hits)
            assert not any(e["label"] for e in run.events)
    assert 0.5 * traffic.RARE_RATE < with_rare / normal_runs < 2 * traffic.RARE_RATE
    assert {k for _, k in seen} == {k for _, _, k in rare}  # every variant turns up
    assert any(n >= 3 for n in seen.values())  # and recurs
    assert any(i >= 150 for i in first.values())  # some are first seen after warm-up
    for info in archetypes():
        assert sum("rare, recurring" in b for b in info.rare_branches) == 2


def test_priorities_costs_and_rare_branches(events: list[dict[str, Any]], runs: list[Run]) -> None:
    prio = Counter(e["priority"] for e in events)
    n = len(events)
    assert prio["normal"] > 0.75 * n and 0.01 * n < prio["high"] < 0.1 * n
    assert 0 < prio["critical"] < 0.01 * n and prio["low"] > 0
    critical_payments = {
        e["action"] for e in events if e["priority"] == "critical" and e["service"] == "payments"
    }
    assert "payments.create" in critical_payments
    assert all(e["cost"] > 0 for e in events)
    support = [r for r in runs if r.archetype == "support" and r.anomaly is None]
    escalated = sum(any(e["action"] == "tickets.escalate" for e in r.events) for r in support)
    assert 0.01 < escalated / len(support) < 0.06


# --- API and CLI --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{"agents": 0}, {"runs_per_agent": -1}, {"anomaly_rate": 1.5}, {"project_id": ""}]
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        iter_events(**kwargs)


def test_doctests() -> None:
    assert doctest.testmod(traffic).failed == 0


def test_cli_writes_jsonl_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events.jsonl"
    argv = [
        "--out",
        str(out),
        "--agents",
        "3",
        "--runs",
        "40",
        "--warmup",
        "10",
        "--anomaly-rate",
        "0.5",
        "--seed",
        "2",
    ]
    assert traffic.main(argv) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert lines == generate(agents=3, runs_per_agent=40, warmup_runs=10, anomaly_rate=0.5, seed=2)
    summary = capsys.readouterr().err.strip()
    assert summary.count("\n") == 0
    assert f"{len(lines)} events, 120 runs" in summary
    kinds = Counter(
        r.anomaly
        for r in iter_runs(agents=3, runs_per_agent=40, warmup_runs=10, anomaly_rate=0.5, seed=2)
    )
    for kind in ANOMALY_KINDS:
        assert f"{kind}={kinds[kind]}" in summary
    with pytest.raises(SystemExit):
        traffic.main(["--out", str(out), "--anomaly-rate", "2"])
