"""A learned baseline (one chain) as an operator reads it: mode, runs, transitions with their
probabilities, as JSON and as a Graphviz DOT graph. Pure: the caller reads Redis.

Why: a baseline is otherwise only counts in Redis hashes; to trust (or reset) it, an operator must
see what it learned — which transitions it expects and how strongly.

>>> b = baseline_from_state("p/a/s", "tag1", {"mode": "2", "runs": "120", "forced": "0"},
...                         {"^\\tn1": 3000, "n1\\tn2": 2000, "n1\\t$": 1000}, {"^": 3000, "n1": 3000})
>>> b.mode, b.runs, [(t.source, t.target, round(t.p, 3)) for t in b.transitions]
('locked', 120, [('^', 'n1', 1.0), ('n1', 'n2', 0.667), ('n1', '$', 0.333)])
>>> print(to_dot(b, top=2).splitlines()[3])
  "^" -> "n1" [label="1.000", penwidth=3.0];
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.labels import NodeLabel, describe
from models.modes import MODE_NAMES
from models.nodes import END, OVERFLOW, START
from models.params import COUNT_SCALE

__all__ = ["Baseline", "Transition", "baseline_from_state", "node_name", "to_dot", "to_json"]

_NODE_NAMES = {START: "START", END: "END", OVERFLOW: "OVERFLOW"}


@dataclass(frozen=True, slots=True)
class Transition:
    """One learned edge: counts in events (decayed, so fractional), p = count / row total."""

    source: str
    target: str
    count: float
    p: float


@dataclass(frozen=True, slots=True)
class Baseline:
    chain: str
    tag: str
    mode: str
    runs: int
    events: int
    nodes: int
    forced: bool
    #: Eligible for locked (high/critical or rich-mode chains; docs/design.md §3).
    eligible: bool
    #: Total-variation change of the distribution at the last checkpoint (stability).
    last_change: float | None
    #: Transitions sent to the overflow node because the chain hit its node or edge cap.
    overflow: int
    #: Most frequent first.
    transitions: tuple[Transition, ...]
    #: The chain's rate of new transitions is above the limit: it never locks (docs/detection.md).
    unlearnable: bool = False
    #: Readable labels of the chain's nodes (``models.labels``), where the engine stored one.
    labels: Mapping[str, NodeLabel] = dataclasses.field(default_factory=dict)


def _int(meta: Mapping[str, str], key: str) -> int:
    try:
        return int(float(meta.get(key, "0") or 0))
    except ValueError:
        return 0


def baseline_from_state(
    chain: str,
    tag: str,
    meta: Mapping[str, str],
    edges: Mapping[str, int],
    rows: Mapping[str, int],
    labels: Mapping[str, NodeLabel] | None = None,
) -> Baseline:
    """A :class:`Baseline` from a chain's Redis hashes (``meta``, ``edges``, ``rows``) and its
    node labels."""
    totals: dict[str, int] = dict(rows)
    for field, count in edges.items():  # rows missing (never expected): sum the edges
        source = field.partition("\t")[0]
        if source not in rows:
            totals[source] = totals.get(source, 0) + count
    transitions = []
    for field, count in edges.items():
        source, _, target = field.partition("\t")
        total = totals.get(source, 0)
        transitions.append(Transition(source, target, count / COUNT_SCALE,
                                      count / total if total > 0 else 0.0))
    transitions.sort(key=lambda t: (-t.count, t.source, t.target))
    mode = _int(meta, "mode")
    chg = meta.get("chg")
    return Baseline(
        chain=chain, tag=tag,
        mode=MODE_NAMES[mode] if 0 <= mode < len(MODE_NAMES) else str(mode),
        runs=_int(meta, "runs"), events=_int(meta, "events"), nodes=_int(meta, "nn"),
        forced=_int(meta, "forced") > 0, eligible=_int(meta, "elig") > 0,
        last_change=float(chg) if chg not in (None, "") else None,
        overflow=_int(meta, "ovf"), transitions=tuple(transitions),
        unlearnable=_int(meta, "unl") > 0, labels=dict(labels or {}),
    )


def node_name(b: Baseline, node: str, max_paths: int = 4) -> str:
    """A node as a person reads it: START/END/OVERFLOW, its label, or the hash when unlabelled.

    >>> b = baseline_from_state("c", "t", {}, {}, {})
    >>> node_name(b, "^"), node_name(b, "n1")
    ('START', 'n1')
    """
    if node in _NODE_NAMES:
        return _NODE_NAMES[node]
    label = b.labels.get(node)
    return describe(label, max_paths) if label is not None else node


def to_json(b: Baseline, top: int | None = None) -> dict[str, Any]:
    """A JSON-able document of ``b`` (``top`` most frequent transitions; None = all)."""
    chosen = b.transitions if top is None else b.transitions[:top]
    return {
        "chain": b.chain, "tag": b.tag, "mode": b.mode, "runs": b.runs, "events": b.events,
        "nodes": b.nodes, "forced": b.forced, "eligible_for_locked": b.eligible,
        "last_change": b.last_change, "overflow": b.overflow, "unlearnable": b.unlearnable,
        "transitions_total": len(b.transitions),
        "transitions": [
            {"from": t.source, "to": t.target, "count": round(t.count, 3), "p": round(t.p, 6)}
            for t in chosen
        ],
        "labels": {
            node: {"service": lab.service, "action": lab.action, "paths": list(lab.paths),
                   "total_paths": lab.total}
            for node, lab in sorted(b.labels.items())
            if any(node in (t.source, t.target) for t in chosen)
        },
    }


def _quote(node: str) -> str:
    return '"' + node.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(b: Baseline, top: int | None = None) -> str:
    """A Graphviz digraph of ``b``: edges labelled with p, thicker for likelier transitions."""
    chosen = b.transitions if top is None else b.transitions[:top]
    lines = [
        f"digraph {_quote(b.chain)} {{",
        f'  label={_quote(f"{b.chain} — {b.mode}, {b.runs} runs")};',
        "  rankdir=LR; node [shape=box, fontname=monospace];",
    ]
    for t in chosen:
        lines.append(
            f"  {_quote(t.source)} -> {_quote(t.target)} "
            f'[label="{t.p:.3f}", penwidth={1 + 2 * t.p:.1f}];'
        )
    named = {n for t in chosen for n in (t.source, t.target) if n in _NODE_NAMES}
    for node in sorted(named):
        lines.append(f"  {_quote(node)} [label={_quote(_NODE_NAMES[node])}, shape=ellipse];")
    labelled = {n for t in chosen for n in (t.source, t.target) if n in b.labels}
    for node in sorted(labelled):
        label = b.labels[node]
        shown = label.paths[:6]
        text = "\n".join([f"{label.service} {label.action}", *shown])
        if label.total > len(shown):
            text += f"\n+{label.total - len(shown)} more"
        # a line break inside a quoted DOT label is written \n
        quoted = _quote(text).replace("\n", "\\n")
        lines.append(f"  {_quote(node)} [label={quoted}, tooltip={_quote(node)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
