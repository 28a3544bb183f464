"""A verdict explained in words: which call, which part of its shape was new, how surprising,
against which threshold, in which mode, which guardrail rule — or that it was no detection at
all but an engine error. Pure: the caller reads the verdict, the node labels and the from-node's
known successors from Redis (``ratchet.store.explain``) and this module says what they mean.

Why: a verdict on its own says bits, p and two node hashes; an operator asked "why was this
agent paused?" needs the calls and the shape difference, and must never mistake a fail-closed
pause for evidence against the agent.

The nearest known shape is the known successor of the same from-node whose key-path set is most
like the current call's (Jaccard similarity; ties go to the more frequent successor):

>>> nearest_shape({"a:str", "b:num"}, {"n1": {"a:str"}, "n2": {"a:str", "b:num", "c:str"}},
...               {"n1": 5.0, "n2": 1.0})
('n2', 0.6666666666666666)
>>> shape_diff({"a:str", "x:bool"}, {"a:str", "b:num"})
(('x:bool',), ('b:num',))
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from models.labels import NodeLabel, describe
from models.nodes import END, OVERFLOW, START
from models.params import UNLEARNABLE_JUDGED, EngineParams
from models.sanitize import clean_text, shown
from models.verdict import Verdict

__all__ = [
    "Call",
    "Explanation",
    "Nearest",
    "explain",
    "jaccard",
    "nearest_shape",
    "render_text",
    "shape_diff",
    "threshold_basis",
]

#: How close to a configured value a stored (rounded) threshold must be to count as that value.
_SAME = 1e-3


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets).

    >>> jaccard({"x", "y"}, {"y", "z"}), jaccard(set(), set())
    (0.3333333333333333, 1.0)
    """
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


def nearest_shape(
    paths: Collection[str],
    known: Mapping[str, Collection[str]],
    weights: Mapping[str, float] | None = None,
) -> tuple[str, float] | None:
    """The node of ``known`` (node → key paths) most like ``paths``: max Jaccard similarity,
    then max weight (how often it followed), then the smaller node id; None when ``known`` is
    empty.

    >>> nearest_shape({"a"}, {}) is None
    True
    >>> nearest_shape({"a"}, {"z": {"b"}, "y": {"b"}})
    ('y', 0.0)
    """
    if not known:
        return None
    weights = weights or {}
    sims = {node: jaccard(paths, other) for node, other in known.items()}
    best = min(sims, key=lambda n: (-sims[n], -weights.get(n, 0.0), n))
    return best, sims[best]


def shape_diff(
    current: Collection[str], nearest: Collection[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(paths new in ``current``, paths of ``nearest`` missing from it), each sorted."""
    cur, near = set(current), set(nearest)
    return tuple(sorted(cur - near)), tuple(sorted(near - cur))


def threshold_basis(threshold: float, params: EngineParams, *, backoff: bool = False) -> str:
    """Where a threshold came from: ``floor`` (the window statistic or fallback was at or under
    ``floor_bits``), ``escape_floor`` (a transition scored by the back-off, at the shape
    escape's own floor ``escape_floor_bits``), ``ceiling`` (the window statistic or fallback was
    at or over ``ceiling_bits``), ``fallback`` (the chain's score window was not full yet) or
    ``window`` (median + k·1.4826·MAD, or mean + k·std, over the recent non-anomalous scores).

    A fallback adapted by approvals (``lua/feedback.lua``) reads as ``window``: only the
    configured fallback is recognised.

    >>> p = EngineParams(floor_bits=12.0, fallback_bits=14.0, escape_floor_bits=16.0,
    ...                  ceiling_bits=18.0)
    >>> threshold_basis(12.0, p), threshold_basis(14.0, p), threshold_basis(13.2, p)
    ('floor', 'fallback', 'window')
    >>> threshold_basis(16.0, p, backoff=True), threshold_basis(16.0, p)
    ('escape_floor', 'window')
    >>> threshold_basis(18.0, p)
    'ceiling'
    """
    if (backoff and params.escape_floor_bits > params.floor_bits
            and abs(threshold - params.escape_floor_bits) <= _SAME):
        return "escape_floor"
    if abs(threshold - params.floor_bits) <= _SAME:
        return "floor"
    if (params.ceiling_bits > params.floor_bits
            and abs(threshold - params.ceiling_bits) <= _SAME):
        return "ceiling"
    if abs(threshold - params.fallback_bits) <= _SAME:
        return "fallback"
    return "window"


@dataclass(frozen=True, slots=True)
class Call:
    """One end of the scored transition."""

    node: str
    #: ``start`` (before the run's first call), ``end`` (the run ended), ``overflow`` (a node
    #: past the chain's node cap) or ``call``.
    kind: str
    label: NodeLabel | None

    def words(self) -> str:
        if self.kind == "start":
            return "(start of the run)"
        if self.kind == "end":
            return "(end of the run)"
        if self.kind == "overflow":
            return "(a call past the chain's node cap, all counted as one node)"
        if self.label is None:
            return f"node {self.node} (no label stored: learned before labels, or past the cap)"
        return describe(self.label)


@dataclass(frozen=True, slots=True)
class Nearest:
    """The known successor of the from-node most like the current call, and how they differ."""

    node: str
    label: NodeLabel
    similarity: float
    new_paths: tuple[str, ...]
    missing_paths: tuple[str, ...]
    #: Either label was cut at its caps, so the comparison saw only part of a shape.
    approximate: bool
    #: How many known successors were compared.
    compared: int


@dataclass(frozen=True, slots=True)
class Explanation:
    event_id: str
    project_id: str
    agent_id: str
    run_id: str
    chain: str
    action: str
    #: The engine failed to judge the event: the action is the on_error policy, no detection.
    engine_error: str | None
    previous: Call
    current: Call
    p: float
    bits: float
    threshold: float
    threshold_from: str
    threshold_words: str
    anomalous: bool
    #: The chain's own action (its reason's): ``allow`` when it enforces nothing (shadow).
    markov_action: str
    edge_seen: float
    from_seen: float
    new_node: bool
    mode: str
    mode_words: str
    nearest: Nearest | None
    nearest_note: str
    markov_notes: tuple[str, ...]
    guardrails: tuple[dict[str, Any], ...]
    approval: Mapping[str, Any] | None = None
    chain_now: Mapping[str, Any] = field(default_factory=dict)
    #: Why a score over the threshold was not anomalous ("" when it was, or was under it).
    not_judged: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for side in ("previous", "current"):
            call = getattr(self, side)
            out[side]["words"] = call.words()
        return out


def _call(node: str, labels: Mapping[str, NodeLabel]) -> Call:
    kind = {START: "start", END: "end", OVERFLOW: "overflow"}.get(node, "call")
    return Call(node, kind, labels.get(node))


def _threshold_words(basis: str, threshold: float, params: EngineParams, window_n: int) -> str:
    if basis == "floor":
        return (f"the floor, {params.floor_bits:g} bits (p < 1/{2 ** params.floor_bits:,.0f}): "
                "the chain's own statistic was at or under it, and no score at or under the "
                "floor is ever anomalous")
    if basis == "escape_floor":
        return (f"the escape floor, {params.escape_floor_bits:g} bits: a shape never seen for "
                "its action, scored by the action's escape, is anomalous only above it "
                "(escape_floor_bits)")
    if basis == "ceiling":
        return (f"the ceiling, {params.ceiling_bits:g} bits: the chain's own statistic was at "
                "or over it, and no threshold goes higher, so a transition never seen (about "
                "19.9 bits) stays anomalous (ceiling_bits)")
    if basis == "fallback":
        return (f"the fallback, {params.fallback_bits:g} bits: the chain's window of recent "
                f"scores held fewer than {params.window} scores")
    stat = ("median + k·1.4826·MAD" if params.window_stat == "robust" else "mean + k·std")
    return (f"the chain's window statistic {threshold:.2f} bits ({stat}, k = "
            f"{params.sigma_multiplier:g} unless approvals adapted it, over its last "
            f"{window_n or params.window} non-anomalous scores), above the floor of "
            f"{params.floor_bits:g} bits")


def _mode_words(v: Verdict, markov: Mapping[str, Any], params: EngineParams) -> str:
    if v.mode == "shadow":
        words = (f"shadow: the chain is still learning (fewer than {params.min_runs_soft} runs, "
                 "or its distribution is not stable yet); the detector reports, nothing is "
                 "enforced by it")
        note = str(markov.get("note", ""))
        if note.startswith("a service new"):
            words = ("shadow, but " + note + " (the agent's other chains are past shadow, so a "
                     "first call to this service is acted on)")
    elif v.mode == "soft_lock":
        words = (f"soft-lock: the chain learned {params.min_runs_soft}+ runs and settled; "
                 f"anomalies are flagged, not stopped (it locks after {params.min_runs_locked} "
                 "runs once stable)")
    elif v.mode == "locked":
        words = (f"locked: the chain learned {params.min_runs_locked}+ runs and settled (or was "
                 "force-locked); anomalies are paused (rejected on critical chains when so "
                 "configured) and held back from learning until a person approves")
    else:
        words = v.mode
    if markov.get("unlearnable"):
        words += ("; the chain is UNLEARNABLE (its rate of new transitions is above the limit): "
                  "it never locks and only " + UNLEARNABLE_JUDGED[params.unlearnable_rule])
    if v.mode_change:
        words += f"; this event moved the chain to {v.mode_change}"
    return words


#: Members of an array or table shown in a guardrail fact, and the fact's length cap.
_FACT_ITEMS = 8
_FACT_CHARS = 200


def _fact(value: Any, depth: int = 0) -> str:
    """A reason's detail value for a person: strings cleaned and cut like other client values
    (:func:`models.sanitize.shown`); arrays and tables with their members (at most
    :data:`_FACT_ITEMS`, strings in JSON quotes), not "a JSON array".

    >>> _fact(["amount"]), _fact(["a", 2, {"k": "<b>v</b>"}]), _fact(list(range(10)))
    ('["amount"]', '["a", 2, {"k": "v"}]', '[0, 1, 2, 3, 4, 5, 6, 7, … 2 more]')
    >>> _fact("x"), _fact(1.5)
    ("'x'", '1.5')
    """
    if isinstance(value, (list, tuple, dict)) and depth < 2:
        members = list(value.items()) if isinstance(value, dict) else list(value)
        parts = [(f"{json.dumps(clean_text(str(m[0]), 40), ensure_ascii=False)}: "
                  f"{_fact(m[1], depth + 1)}") if isinstance(value, dict) else
                 _fact(m, depth + 1) for m in members[:_FACT_ITEMS]]
        if len(members) > _FACT_ITEMS:
            parts.append(f"… {len(members) - _FACT_ITEMS} more")
        text = ", ".join(parts)
        if len(text) > _FACT_CHARS:
            text = text[: _FACT_CHARS - 1] + "…"
        return ("{" + text + "}") if isinstance(value, dict) else ("[" + text + "]")
    if isinstance(value, str) and depth:
        return json.dumps(clean_text(value, 60), ensure_ascii=False)
    return shown(value, 60)


def _guardrail(r: Any) -> dict[str, Any]:
    detail = dict(r.detail)
    rule = str(detail.pop("rule", r.source.partition(":")[2] or r.source))
    facts = ", ".join(f"{k}={_fact(val)}" for k, val in sorted(detail.items()))
    return {"source": r.source, "rule": rule, "action": r.action, "facts": facts}


def explain(
    v: Verdict,
    labels: Mapping[str, NodeLabel],
    successors: Mapping[str, float],
    params: EngineParams,
    *,
    approval: Mapping[str, Any] | None = None,
    chain_now: Mapping[str, Any] | None = None,
) -> Explanation:
    """The explanation of ``v``. ``labels`` maps node ids to labels (both ends of the edge and
    the from-node's known successors); ``successors`` maps each node seen after the from-node
    to how often it followed (the transition counts)."""
    chain_now = chain_now or {}
    markov: Mapping[str, Any] = next(
        (r.detail for r in v.reasons if r.source == "markov"), {}
    )
    previous = _call(v.edge.from_node, labels)
    current = _call(v.edge.to_node, labels)
    basis = str(markov.get("threshold_from")
                or threshold_basis(v.threshold, params, backoff=bool(markov.get("backoff"))))
    window_n = int(markov.get("window_n", 0) or 0)
    nearest: Nearest | None = None
    known = {
        n: set(lab.paths) for n, lab in ((n, labels.get(n)) for n in successors)
        if lab is not None and n != v.edge.to_node and n not in (END, OVERFLOW)
    }
    if current.label is None:
        note = ("the current call has no stored label, so its shape cannot be compared"
                if current.kind == "call" else "the current step is not a call")
    elif not known:
        note = ("no other call was ever seen after the previous one"
                if not successors or set(successors) <= {v.edge.to_node, END, OVERFLOW}
                else "the other calls seen after the previous one have no stored labels")
    else:
        found = nearest_shape(current.label.paths, known, successors)
        assert found is not None
        node, sim = found
        label = labels[node]
        new, missing = shape_diff(current.label.paths, label.paths)
        nearest = Nearest(node, label, sim, new, missing,
                          current.label.truncated or label.truncated, len(known))
        note = ""
    notes = []
    for key in ("loop_note", "backoff", "unlearnable_note"):
        if markov.get(key):
            notes.append(str(markov[key]))
    if markov.get("repeats"):
        notes.append(f"repeats of this action back to back: {markov['repeats']} (learned limit "
                     f"{markov.get('repeat_limit')})")
    p = float(markov.get("p", v.edge.p))
    not_judged = ""
    if not v.anomalous and not v.error and v.score > v.threshold:
        not_judged = _why_not_judged(v, params, chain_now)
    return Explanation(
        event_id=v.event_id, project_id=v.project_id, agent_id=v.agent_id, run_id=v.run_id,
        chain=v.chain, action=v.action, engine_error=v.error,
        previous=previous, current=current, p=p, bits=v.score, threshold=v.threshold,
        threshold_from=basis,
        threshold_words=_threshold_words(basis, v.threshold, params, window_n),
        anomalous=v.anomalous,
        markov_action=str(next((r.action for r in v.reasons if r.source == "markov"), "allow")),
        edge_seen=v.edge.count, from_seen=v.edge.row_total,
        new_node=bool(markov.get("new_node", False)),
        mode=v.mode, mode_words=_mode_words(v, markov, params),
        nearest=nearest, nearest_note=note, markov_notes=tuple(notes),
        guardrails=tuple(_guardrail(r) for r in v.reasons if r.source != "markov"),
        approval=approval, chain_now=dict(chain_now), not_judged=not_judged,
    )


def _why_not_judged(v: Verdict, params: EngineParams, chain_now: Mapping[str, Any]) -> str:
    """Why a score over the threshold is not anomalous (docs/detection.md, "The rule"): only a
    shape new to the chain counts on a chain too thin to judge or unlearnable; the verdict has
    no Markov reason then, so this reads the engine settings and the chain as it is now."""
    if (params.backoff_weight <= 0 and params.min_support > 0
            and v.edge.row_total < params.min_support):
        return (f"not judged: the previous call was left only {round(v.edge.row_total, 1):g} "
                f"times, under min_support ({params.min_support}) with the back-off off, so "
                "only a shape new to the chain counts there")
    now = ("the chain is unlearnable now" if chain_now.get("unlearnable") else
           "the chain is not unlearnable now, so it was when it judged this event"
           if chain_now else "the chain's record was not read")
    return ("not judged: on an unlearnable chain (its rate of new transitions over "
            f"novelty_limit, {params.novelty_limit:g}) an unseen move between shapes it knows is "
            f"no evidence; only {UNLEARNABLE_JUDGED[params.unlearnable_rule]} ({now})")


def _paths(paths: tuple[str, ...]) -> str:
    return ", ".join(paths) if paths else "none"


def _judged(e: Explanation) -> str:
    """The transition line's conclusion: a score under the threshold can still be anomalous
    for another reason the notes give (repeats over the learned limit, a locked vocabulary)."""
    if not e.anomalous:
        return "over it, but not anomalous (see why below)" if e.not_judged else "not anomalous"
    return "ANOMALOUS" if e.bits > e.threshold else "under it, but ANOMALOUS (see the notes)"


def render_text(e: Explanation) -> str:
    """The explanation for a person, one fact a line."""
    lines = [f"event {e.event_id} of agent {e.agent_id}, run {e.run_id}",
             f"chain {e.chain}"]
    if e.engine_error:
        fail = "fail-open" if e.action == "allow" else "fail-closed"
        lines.append(
            f"verdict: {e.action.upper()} — NOT A DETECTION. Ratchet could not judge this event "
            f"({e.engine_error}); {e.action} is the project's on_error policy ({fail}). Nothing "
            "about the agent's behaviour was evaluated."
        )
        return "\n".join(lines)
    # Credited: the reasons whose action is the verdict's; a weaker one (a Markov flag under a
    # guardrail's pause) decided nothing and is told apart.
    sources = [(f"guardrail {g['rule']}", str(g["action"])) for g in e.guardrails]
    if e.anomalous and e.markov_action != "allow":
        sources.insert(0, ("the Markov chain", e.markov_action))
    by = [name for name, action in sources if action == e.action]
    also = [f"{name} → {action}" for name, action in sources if action != e.action]
    unenforced = (f"; the Markov chain found it anomalous but enforces nothing in {e.mode}"
                  if e.anomalous and e.markov_action == "allow" else "")
    lines.append(f"verdict: {e.action.upper()}"
                 + (f" — decided by {', '.join(by)}" if by else
                    " — nothing was enforced" if unenforced else " — nothing was unusual")
                 + unenforced
                 + (f"; weaker, not deciding: {', '.join(also)}" if also else ""))
    lines.append(f"previous call: {e.previous.words()}")
    new = " — a shape this chain never saw" if e.new_node else ""
    lines.append(f"current call:  {e.current.words()}{new}")
    if e.nearest is not None:
        n = e.nearest
        approx = " (labels cut at their caps: approximate)" if n.approximate else ""
        lines.append(f"nearest known next call after the previous one ({n.compared} compared): "
                     f"{describe(n.label, 4)}, similarity {n.similarity:.2f}{approx}")
        lines.append(f"  key paths new in this call:  {_paths(n.new_paths)}")
        lines.append(f"  key paths it lacks:          {_paths(n.missing_paths)}")
    elif e.nearest_note:
        lines.append(f"shape comparison: {e.nearest_note}")
    lines.append(
        f"transition: p = {e.p:.6f} (this move seen {round(e.edge_seen, 1):g} times out of "
        f"{round(e.from_seen, 1):g} from the previous call; counts decay) → {max(e.bits, 0.0):.2f} "
        f"bits; threshold {e.threshold:.2f} bits → {_judged(e)}"
    )
    lines.append(f"threshold: {e.threshold_words}")
    if e.not_judged:
        lines.append(f"why not anomalous: {e.not_judged}")
    for note in e.markov_notes:
        lines.append(f"note: {note}")
    lines.append(f"mode: {e.mode_words}")
    if e.guardrails:
        for g in e.guardrails:
            lines.append(f"guardrail {g['rule']} → {g['action']}: {g['facts']}")
    else:
        lines.append("guardrails: none fired")
    if e.approval:
        lines.append(f"decided by a person: {e.approval.get('decision')} by "
                     f"{e.approval.get('actor')} ({e.approval.get('reason') or 'no reason'})")
    if e.chain_now:
        now = e.chain_now
        runs = now.get("runs")
        lines.append(f"chain now: {now.get('mode')}, {runs} run{'' if runs == 1 else 's'}"
                     + (", unlearnable" if now.get("unlearnable") else ""))
    return "\n".join(lines)
