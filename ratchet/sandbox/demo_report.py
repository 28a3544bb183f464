"""The summary of a ``ratchet demo`` run: what a first-time user wants to see at the end.

Built from what the demo sent (events with their ground-truth labels) and the verdict envelopes
that came back. No I/O here apart from :meth:`DemoReport.render` returning text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.evaluation import Confusion, RunTally
from models.explain import Explanation, render_text
from models.verdict import MODES, Verdict

__all__ = [
    "DemoReport", "SentEvent", "build_report", "false_cause", "percentile", "pick_to_explain",
]


@dataclass(frozen=True, slots=True)
class SentEvent:
    event_id: str
    agent_id: str
    run_id: str
    label: bool
    #: The run is past the generator's warm-up (only those are scored for precision/recall).
    scored: bool


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted values; 0.0 for no values.

    >>> percentile([5, 1, 3, 2, 4], 50), percentile([5, 1, 3, 2, 4], 99)
    (3, 5)
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class DemoReport:
    events_sent: int = 0
    verdicts: int = 0
    missing: int = 0
    seconds: float = 0.0
    actions: Counter[str] = field(default_factory=Counter)
    anomalous: int = 0
    chains_by_mode: Counter[str] = field(default_factory=Counter)
    mode_changes: list[dict[str, Any]] = field(default_factory=list)
    explained: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)
    sync_latency_ms: dict[str, float] = field(default_factory=dict)
    detector_events: Confusion | None = None
    detector_runs: Confusion | None = None
    enforced_events: Confusion | None = None
    enforced_runs: Confusion | None = None
    #: Where the false runs (scored normal runs with something enforced) come from, by the
    #: first enforced event of each: ``archetype``, ``cause`` and ``mode`` → runs.
    false_runs: dict[str, Counter[str]] = field(default_factory=dict)
    #: Anomalous scored runs with nothing enforced, by archetype → runs.
    missed_runs: Counter[str] = field(default_factory=Counter)
    settings: dict[str, Any] = field(default_factory=dict)
    #: Where the demo's processes served Prometheus metrics, and what the worker's said at the end.
    metrics: dict[str, Any] = field(default_factory=dict)
    #: A paused or rejected verdict of the run to explain in words (:meth:`add_explanation`).
    to_explain: Verdict | None = None
    #: That verdict explained (``models.explain``), as JSON and as the text ``ratchet explain``
    #: prints.
    explanation: dict[str, Any] | None = None
    explanation_text: str = ""
    #: The key prefix the demo wrote under in an external Redis (``RATCHET_REDIS_URL``), which
    #: keeps its state afterwards; None when the demo's own redis-server held it (gone now).
    key_prefix: str | None = None

    def add_explanation(self, e: Explanation) -> None:
        self.explanation = e.to_dict()
        self.explanation_text = render_text(e)

    @property
    def events_per_s(self) -> float:
        return self.verdicts / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        def conf(c: Confusion | None) -> dict[str, Any] | None:
            return c.as_dict() if c is not None else None

        return {
            "events_sent": self.events_sent,
            "verdicts": self.verdicts,
            "missing_verdicts": self.missing,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events_per_s, 1),
            "actions": dict(self.actions),
            "anomalous": self.anomalous,
            "chains_by_final_mode": dict(self.chains_by_mode),
            "mode_changes": self.mode_changes,
            "explained_verdicts": self.explained,
            "ingest_to_verdict_ms": self.latency_ms,
            "single_event_wait_ms": self.sync_latency_ms,
            "detection_post_warmup": {
                "detector": {"event_level": conf(self.detector_events),
                             "run_level": conf(self.detector_runs)},
                "enforced": {"event_level": conf(self.enforced_events),
                             "run_level": conf(self.enforced_runs)},
                "false_runs": {k: dict(v.most_common()) for k, v in self.false_runs.items()},
                "missed_runs_by_archetype": dict(self.missed_runs.most_common()),
            },
            "settings": self.settings,
            "metrics": self.metrics,
            "explanation": self.explanation,
            "key_prefix": self.key_prefix,
        }

    def render(self) -> str:
        lines = ["", "=== Ratchet demo summary ==="]
        lines.append(
            f"events: {self.events_sent:,} sent, {self.verdicts:,} verdicts"
            + (f", {self.missing:,} MISSING" if self.missing else "")
            + f" in {self.seconds:.1f}s → {self.events_per_s:,.0f} events/s end to end"
        )
        if self.latency_ms:
            lines.append(
                "ingest → verdict latency (bulk batches, under load): "
                f"p50 {self.latency_ms['p50']:.0f} ms, p99 {self.latency_ms['p99']:.0f} ms"
            )
        if self.sync_latency_ms:
            lines.append(
                f"single events with wait_ms (round trip, {self.sync_latency_ms['n']:.0f} sent): "
                f"p50 {self.sync_latency_ms['p50']:.1f} ms, p99 {self.sync_latency_ms['p99']:.1f} ms"
            )
        lines.append(
            "verdicts by action: "
            + ", ".join(f"{a}={self.actions.get(a, 0):,}" for a in ("allow", "flag", "pause",
                                                                     "reject"))
            + f"   (detector found {self.anomalous:,} anomalous, in any mode)"
        )
        lines.append(
            "chains by final mode: "
            + ", ".join(f"{m}={self.chains_by_mode.get(m, 0)}" for m in MODES)
        )
        if self.metrics:
            lines.append(
                f"metrics: worker {self.metrics['worker']} counted "
                f"{self.metrics['worker_verdicts_total']:,} verdicts (ratchet_verdicts_total); "
                f"gateway {self.metrics['gateway']}"
            )
        if self.mode_changes:
            lines.append(f"mode changes seen ({len(self.mode_changes)}):")
            for ch in self.mode_changes[:12]:
                lines.append(f"  {ch['chain']:<44} → {ch['to']:<16} after {ch['runs_seen']} runs")
            if len(self.mode_changes) > 12:
                lines.append(f"  … and {len(self.mode_changes) - 12} more")
        for title, ev, run in (
            ("detector (anomalous, any mode)", self.detector_events, self.detector_runs),
            ("enforced (flag/pause/reject)", self.enforced_events, self.enforced_runs),
        ):
            if ev is None or run is None:
                continue
            lines.append(
                f"{title}, post-warm-up: run level precision {run.precision:.2f} recall "
                f"{run.recall:.2f} (tp {run.tp}, fp {run.fp}, fn {run.fn}); event level "
                f"precision {ev.precision:.2f} recall {ev.recall:.2f}"
            )
        for key, counts in self.false_runs.items():
            total = sum(counts.values())
            top = ", ".join(f"{k} {n / total:.0%}" for k, n in counts.most_common(6))
            lines.append(f"false runs ({total:,}) by {key}: {top}")
        if self.missed_runs:
            total = sum(self.missed_runs.values())
            top = ", ".join(f"{k} {n}" for k, n in self.missed_runs.most_common())
            lines.append(f"missed anomalous runs ({total:,}) by archetype: {top}")
        if self.explained:
            lines.append("a few explained verdicts:")
            for ex in self.explained:
                truth = "labelled anomalous" if ex["label"] else "labelled normal"
                lines.append(
                    f"  {ex['action']:<6} {ex['agent_id']} run {ex['run_id']} ({ex['mode']}, "
                    f"{truth}): {ex['why']}"
                )
        explained = self.explanation
        command = (None if explained is None else
                   f"ratchet explain {explained['event_id']} --project {explained['project_id']}")
        if self.explanation_text and explained is not None:
            kind = ("" if explained["action"] in ("pause", "reject")
                    else " (nothing was paused or rejected in this run: a flagged one)")
            # With the demo's own redis-server (stopped with the demo) the command cannot run
            # afterwards: say what the text is instead of offering a command that fails.
            where = (f"`{command}`, see below" if self.key_prefix is not None else
                     "as `ratchet explain` prints it; the demo's own Redis stopped with the "
                     "demo, so to explain verdicts afterwards run it with RATCHET_REDIS_URL set")
            lines.append(f"one verdict explained in words{kind} ({where}):")
            lines += [f"  {line}" for line in self.explanation_text.splitlines()]
        if self.key_prefix is not None:
            lines.append(
                "the demo's state stays in RATCHET_REDIS_URL under the key prefix "
                f"{self.key_prefix} (how to remove it: docs/operations.md, \"Try it\"); to "
                "inspect it:")
            lines.append(f"  export RATCHET_KEY_PREFIX={self.key_prefix}")
            if explained is not None:
                lines.append(f"  {command}")
                lines.append(f"  ratchet baselines list --project {explained['project_id']}")
        return "\n".join(lines)


def _why(v: Verdict) -> str:
    parts = []
    for r in v.reasons:
        d = r.detail
        if r.source == "markov":
            new = " into a node never seen" if d.get("new_node") else ""
            parts.append(
                f"markov: transition{new} with p={float(d.get('p', 0.0)):.4f} scored "
                f"{float(d.get('score_bits', v.score)):.1f} bits > threshold "
                f"{float(d.get('threshold_bits', v.threshold)):.1f}"
            )
        else:
            parts.append(f"{r.source}: {_facts(d)}")
    return "; ".join(parts) or "no reason"


def _facts(detail: Mapping[str, Any]) -> str:
    """A guardrail reason in words: its rule, then its note if it has one, else its facts."""
    rest = {k: v for k, v in detail.items() if k != "rule"}
    rule = str(detail.get("rule", ""))
    if "note" in rest:
        return f"{rule} — {rest['note']}"
    facts = ", ".join(f"{k}={str(v)[:60]}" for k, v in sorted(rest.items()))
    return f"{rule} ({facts})" if facts else rule


def false_cause(v: Verdict) -> str:
    """What made an enforced verdict: the first reason enforcing its action, as a short kind.

    Markov reasons split by edge: ``markov: new node`` (a shape the chain never saw),
    ``markov: unseen edge`` (two known nodes never seen in that order), ``markov: rare edge``
    (seen before, but scored above the threshold). Guardrails give their rule id.
    """
    for r in v.reasons:
        if r.action != v.action:
            continue
        if r.source != "markov":
            return f"{r.source}: {r.detail.get('rule', r.source)}"
        if r.detail.get("new_node"):
            return "markov: new node"
        return "markov: unseen edge" if not r.detail.get("seen") else "markov: rare edge"
    return "other"


def pick_to_explain(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The verdict the summary explains in words: a paused or rejected one, else (a short run
    that stopped nothing) a flagged one; within each, one the Markov chain detected first (it
    has a shape to compare). Never an engine-error verdict."""
    best: tuple[int, Verdict] | None = None
    for v in verdicts:
        if v.action == "allow" or v.error:
            continue
        rank = (0 if v.action in ("pause", "reject") else 2) + (
            0 if v.anomalous and any(r.source == "markov" for r in v.reasons) else 1)
        if best is None or rank < best[0]:
            best = (rank, v)
    return None if best is None else best[1]


def _archetype(agent_id: str) -> str:
    return agent_id.rsplit("-", 1)[0]


def build_report(
    sent: Iterable[SentEvent],
    verdicts: Mapping[str, Sequence[Verdict]],
    *,
    latencies_s: Sequence[float],
    seconds: float,
    explain: int = 5,
) -> DemoReport:
    """Everything but the sync-latency figures and settings (the demo adds those)."""
    rep = DemoReport(seconds=seconds)
    det_events: list[tuple[bool, bool]] = []
    enf_events: list[tuple[bool, bool]] = []
    det_runs, enf_runs = RunTally(), RunTally()
    last_mode: dict[str, tuple[float, str]] = {}
    runs_per_chain: Counter[str] = Counter()
    candidates: list[tuple[int, Verdict, SentEvent]] = []
    first_enforced: dict[tuple[str, str], Verdict] = {}
    run_label: dict[tuple[str, str], bool] = {}
    for ev in sent:
        rep.events_sent += 1
        answers = verdicts.get(ev.event_id)
        if not answers:
            rep.missing += 1
            continue
        v = answers[0]
        rep.verdicts += 1
        rep.actions[v.action] += 1
        rep.anomalous += v.anomalous
        prev = last_mode.get(v.chain)
        if prev is None or v.decided_at >= prev[0]:
            last_mode[v.chain] = (v.decided_at, v.mode)
        if v.edge.from_node == "^":
            runs_per_chain[v.chain] += 1
        if v.mode_change:
            rep.mode_changes.append(
                {"chain": v.chain, "to": v.mode_change, "event_id": v.event_id,
                 "runs_seen": runs_per_chain[v.chain]}
            )
        if ev.scored:
            enforced = v.action != "allow"
            det_events.append((v.anomalous, ev.label))
            enf_events.append((enforced, ev.label))
            det_runs.add((ev.agent_id, ev.run_id), v.anomalous, ev.label)
            enf_runs.add((ev.agent_id, ev.run_id), enforced, ev.label)
            run = (ev.agent_id, ev.run_id)
            run_label[run] = run_label.get(run, False) or ev.label
            if enforced and run not in first_enforced:
                first_enforced[run] = v
        if v.reasons and v.action != "allow":
            # prefer true detections of different agents, then anything enforced
            candidates.append((0 if ev.label else 1, v, ev))
    rep.chains_by_mode = Counter(mode for _, mode in last_mode.values())
    if det_events:
        rep.detector_events = Confusion.of(det_events)
        rep.enforced_events = Confusion.of(enf_events)
        rep.detector_runs = det_runs.confusion()
        rep.enforced_runs = enf_runs.confusion()
        rep.false_runs = {"archetype": Counter(), "cause": Counter(), "mode": Counter()}
        for run, v in first_enforced.items():
            if run_label[run]:
                continue
            rep.false_runs["archetype"][_archetype(run[0])] += 1
            rep.false_runs["cause"][false_cause(v)] += 1
            rep.false_runs["mode"][v.mode] += 1
        for run, anomalous in run_label.items():
            if anomalous and run not in first_enforced:
                rep.missed_runs[_archetype(run[0])] += 1
    if latencies_s:
        ms = [x * 1000 for x in latencies_s]
        rep.latency_ms = {"p50": round(percentile(ms, 50), 2), "p99": round(percentile(ms, 99), 2),
                          "max": round(max(ms), 2)}
    rep.to_explain = pick_to_explain(c[1] for c in sorted(candidates, key=lambda c: c[0]))
    seen_agents: set[str] = set()
    for _, v, ev in sorted(candidates, key=lambda c: c[0]):
        if len(rep.explained) >= explain:
            break
        if ev.agent_id in seen_agents:
            continue
        seen_agents.add(ev.agent_id)
        rep.explained.append(
            {"event_id": v.event_id, "agent_id": v.agent_id, "run_id": v.run_id,
             "chain": v.chain, "mode": v.mode, "action": v.action, "label": ev.label,
             "score": round(v.score, 2), "threshold": round(v.threshold, 2), "why": _why(v),
             "reasons": [r.to_dict() for r in v.reasons]}
        )
    return rep
