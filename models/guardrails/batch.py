"""Guardrails over a batch of events: the same reasons as :func:`~models.guardrails.evaluate`
per event, with the payload scans done once per batch instead of once per event.

Two steps:

1. :func:`plan` (per event, in order): the stateful rules (velocity, loop, entropy, cost) and
   media run as in ``evaluate``; for the pattern and PII guardrails only *what* would be
   scanned is decided — which rule reads which value, which values the PII detectors read —
   and the event's :class:`~models.guardrails.budget.ScanBudget` is charged exactly as the
   per-event scans charge it (charges depend on sizes, never on what is found).
2. :func:`finish` (per batch): the planned values are scanned together and the findings
   mapped back to their events and key paths:

   - pattern rules: compiled RE2 sets of the policy's rules
     (:mod:`models.guardrails.pattern_set`) prefilter all values of the batch in one scan
     per subset of rules; a rule then searches only the values the prefilter flagged for it
     (each distinct value once);
   - PII: every planned text of the batch joined and each detector run once, with each
     event's scan windows kept to its own region (:func:`models.guardrails.pii_scan.scan_texts`
     with ``groups``), events grouped by detector settings.

The reasons — order, counts, paths, hints — are exactly those of the per-event path, which
stays as the reference (``tests/unit/test_guardrails_batch.py`` checks the two agree on random
payloads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter

from models.events import IngestEvent
from models.guardrails.budget import ScanBudget
from models.guardrails.cost import check_cost
from models.guardrails.decode import with_decoded
from models.guardrails.entropy import check_entropy
from models.guardrails.loop import check_loop
from models.guardrails.media import check_media
from models.guardrails.order import check_order, step_text
from models.guardrails.paths import Leaf, walk
from models.guardrails.pattern import (
    Encoded,
    PatternConfig,
    PatternRule,
    builtin_scope,
    encoded,
    rule_reason,
    scan_limit_reason,
)
from models.guardrails.pattern_set import rule_set
from models.guardrails.pii import PiiConfig, pii_reasons, select_pii
from models.guardrails.pii_scan import scan_texts
from models.guardrails.pii_secrets import Finding
from models.guardrails.policy import Policy
from models.guardrails.redact import MAX_EXAMPLES
from models.guardrails.state import EMPTY_STATE, GuardrailState
from models.guardrails.values import check_values
from models.guardrails.velocity import check_velocity
from models.verdict import Reason

__all__ = ["CHUNK_EVENTS", "SET_MAX_BYTES", "Planned", "evaluate_batch", "finish", "plan"]

#: Events scanned together at most. Planned events stay alive until their chunk is scanned,
#: and many live objects make Python's garbage collector work harder: measured on 8,000
#: events of the benchmark traffic, chunks of 16–32 cost 15–20 % less CPU than one event at a
#: time, chunks of 200 no less.
CHUNK_EVENTS = 32
#: Values up to this many bytes go through the pattern prefilter (RE2 sets); longer ones are
#: searched rule by rule (see :mod:`models.guardrails.pattern_set`, "Cost").
SET_MAX_BYTES = 4_096
#: A leaf's ``name`` (:class:`~models.guardrails.paths.Leaf` is a named tuple).
_NAME = itemgetter(Leaf._fields.index("name"))


@dataclass(slots=True)
class _RulePlan:
    rule: PatternRule
    #: Indices of the leaves the rule scans, in order.
    leaves: list[int]
    cut: bool


@dataclass(slots=True)
class _PatternPlan:
    cfg: PatternConfig
    leaves: Sequence[Leaf]
    data: Encoded
    rules: list[_RulePlan]
    skipped: list[PatternRule]


@dataclass(slots=True)
class _PiiPlan:
    cfg: PiiConfig
    texts: list[str]
    owners: list[Leaf]
    hits: list[tuple[Leaf, Finding]]
    unscanned: int


@dataclass(slots=True)
class Planned:
    """One event between :func:`plan` and :func:`finish`."""

    head: list[Reason]
    pattern: _PatternPlan | None
    pii: _PiiPlan | None
    tail: list[Reason]
    #: Budget steps the plan charged (pattern and PII scans).
    steps: int = 0


def _plan_pattern(
    cfg: PatternConfig, leaves: Sequence[Leaf], budget: ScanBudget | None
) -> _PatternPlan | None:
    """The per-event scan of :func:`models.guardrails.pattern.check_pattern` without the
    matching: the same charges, in the same order (rule by rule, value by value). None when
    no rule reads any value."""
    rs = rule_set(cfg.rules)
    limit = cfg.max_scan_chars
    data: Encoded = {}
    per_rule: dict[int, list[int]] = {}
    disabled = cfg.disabled_rules
    memo = rs.readers(disabled)
    for i, leaf in enumerate(leaves):
        ris = memo.get(leaf.key)
        if ris is None:
            ris = rs.read_by(leaf.key, disabled)
        if ris:
            encoded(leaf, limit, data, i)
            for ri in ris:
                per_rule.setdefault(ri, []).append(i)
    if not per_rule:
        return None
    rules = cfg.rules
    todo = [(rules[ri], per_rule[ri]) for ri in sorted(per_rule)]
    plans: list[_RulePlan] = []
    skipped: list[PatternRule] = []
    if budget is not None:
        total = sum(r.compiled.cost(len(data[i][0])) for r, idxs in todo for i in idxs)
        if not budget.take(total):
            # The budget runs out part way: charge value by value, every enabled rule in turn
            # (one that reads no value charges nothing but is skipped after the cut-off).
            read = {id(r) for r, _ in todo}
            for rule in rules:
                if rule.id in disabled:
                    continue
                if skipped:
                    skipped.append(rule)
                    continue
                if id(rule) not in read:
                    continue
                idxs = per_rule[rules.index(rule)]
                taken: list[int] = []
                for i in idxs:
                    if not budget.take(rule.compiled.cost(len(data[i][0]))):
                        skipped.append(rule)
                        break
                    taken.append(i)
                plans.append(_RulePlan(rule, taken, any(data[i][1] for i in taken)))
            return _PatternPlan(cfg, leaves, data, plans, skipped)
    plans = [_RulePlan(rule, idxs, any(data[i][1] for i in idxs)) for rule, idxs in todo]
    return _PatternPlan(cfg, leaves, data, plans, skipped)


def plan(
    policy: Policy,
    event: IngestEvent,
    state: GuardrailState | None = None,
    budget: ScanBudget | None = None,
) -> Planned:
    """Step 1 for one event (see the module docstring); charges ``budget``."""
    st = state or EMPTY_STATE
    velocity, loop, entropy, cost, pattern, pii, media, order, value = policy.configs_for(
        event.service, event.priority)

    head: list[Reason] = []
    if velocity.enabled:
        head += check_velocity(
            velocity, agent_events=st.agent_events_in_window, run_events=st.run_events_in_window
        )
    if st.node and loop.enabled:
        head += check_loop(loop, st.run_nodes, st.node)
    if st.node and entropy.enabled:
        head += check_entropy(entropy, st.run_nodes, st.node, run_events=st.run_events)
    if cost.enabled:
        head += check_cost(
            cost, event_cost=event.cost, run_cost=st.run_cost, agent_daily_cost=st.agent_daily_cost
        )
    scan_patterns = pattern.enabled and bool(pattern.rules)
    pattern_plan = pii_plan = None
    tail: list[Reason] = []
    used = budget.used if budget is not None else 0
    if scan_patterns or pii.enabled or media.enabled:
        leaves = walk(event.payload)
        read = with_decoded(leaves) if scan_patterns or pii.enabled else leaves
        if scan_patterns:
            pattern = builtin_scope(pattern, read)
            scan_patterns = bool(pattern.rules)
        if scan_patterns:
            pattern_plan = _plan_pattern(pattern, read, budget)
        if pii.enabled and pii.detectors:
            texts, owners, hits, unscanned = select_pii(pii, read, budget)
            if texts or hits or unscanned:
                pii_plan = _PiiPlan(pii, texts, owners, hits, unscanned)
        if media.enabled:
            tail = check_media(media, leaves)
    if (st.order is not None or st.streak is not None) and order.enabled:
        tail = tail + check_order(order, step_text(event.service, event.action), st.order,
                                  st.streak)
    if st.values and value.enabled:
        tail = tail + check_values(value, st.values)
    steps = budget.used - used if budget is not None else 0
    return Planned(head, pattern_plan, pii_plan, tail, steps)


def _pattern_reasons(batch: Sequence[Planned]) -> dict[int, list[Reason]]:
    """Pattern reasons per planned event. Per rule tuple: each distinct value (up to
    :data:`SET_MAX_BYTES`) goes to the prefilter of the subset of rules that read it, one scan
    per subset; a rule then searches only the values whose prefilter flagged it (and the
    longer values), each distinct value once."""
    out: dict[int, list[Reason]] = {}
    groups: dict[int, list[int]] = {}
    for k, p in enumerate(batch):
        if p.pattern is not None:
            groups.setdefault(id(p.pattern.cfg.rules), []).append(k)
    for members in groups.values():
        rules = batch[members[0]].pattern.cfg.rules  # type: ignore[union-attr]
        index = {id(r): i for i, r in enumerate(rules)}
        rs = rule_set(rules)
        readers: dict[bytes, set[int]] = {}
        for k in members:
            pp = batch[k].pattern
            assert pp is not None
            for rp in pp.rules:
                ri = index[id(rp.rule)]
                for i in rp.leaves:
                    value = pp.data[i][0]
                    if len(value) <= SET_MAX_BYTES:
                        readers.setdefault(value, set()).add(ri)
        by_subset: dict[tuple[int, ...], list[bytes]] = {}
        for value, ris in readers.items():
            by_subset.setdefault(tuple(sorted(ris)), []).append(value)
        flagged = {subset: rs.candidates(subset, values) for subset, values in by_subset.items()}
        maybe = {v: flagged[subset] for subset, values in by_subset.items() for v in values}
        searched: dict[tuple[int, bytes, bool], bool] = {}
        for k in members:
            pp = batch[k].pattern
            assert pp is not None
            leaves = pp.leaves
            for rp in pp.rules:
                ri = index[id(rp.rule)]
                count, paths = 0, list[str]()
                for i in rp.leaves:
                    value = pp.data[i][0]
                    rules_flagged = maybe.get(value)
                    if rules_flagged is not None and ri not in rules_flagged:
                        continue
                    cut = pp.data[i][1]
                    hit = searched.get((ri, value, cut))
                    if hit is None:
                        hit = searched[ri, value, cut] = rp.rule.hit(value, cut)
                    if hit:
                        count += 1
                        if len(paths) < MAX_EXAMPLES:
                            paths.append(leaves[i].path)
                if count:
                    reason = rule_reason(pp.cfg, rp.rule, count, paths, rp.cut)
                    out.setdefault(k, []).append(reason)
            if pp.skipped:
                out.setdefault(k, []).append(scan_limit_reason(pp.cfg, pp.skipped))
    return out


def _pii_reasons(batch: Sequence[Planned]) -> dict[int, list[Reason]]:
    """PII reasons per planned event: one joined scan per group of events whose detector
    settings are the same."""
    out: dict[int, list[Reason]] = {}
    groups: dict[tuple[tuple[str, ...], int, int, float], list[int]] = {}
    for k, p in enumerate(batch):
        if p.pii is not None:
            c = p.pii.cfg
            key = (c.detectors, c.entropy_min_length, c.entropy_max_length, c.entropy_min_bits)
            groups.setdefault(key, []).append(k)
    for (detectors, min_len, max_len, min_bits), members in groups.items():
        texts: list[str] = []
        names: list[str] = []
        owner: list[tuple[int, Leaf]] = []
        counts: list[int] = []
        for k in members:
            pp = batch[k].pii
            assert pp is not None
            texts += pp.texts
            names += map(_NAME, pp.owners)  # in C: no comprehension (a call) per event
            owner += zip(repeat(k), pp.owners)
            counts.append(len(pp.texts))
        found = scan_texts(
            texts, names, detectors=detectors, entropy_min_length=min_len,
            entropy_max_length=max_len, entropy_min_bits=min_bits, groups=counts,
        )
        for i, f in found:
            k, leaf = owner[i]
            batch[k].pii.hits.append((leaf, f))  # type: ignore[union-attr]
        for k in members:
            pp = batch[k].pii
            assert pp is not None
            if pp.hits or pp.unscanned:
                out[k] = pii_reasons(pp.cfg, pp.hits, pp.unscanned)
    return out


def finish(batch: Sequence[Planned]) -> list[list[Reason]]:
    """Step 2: the reasons of every planned event, in the order ``evaluate`` gives them
    (velocity, loop, entropy, cost, pattern, PII, media)."""
    patterns = _pattern_reasons(batch)
    piis = _pii_reasons(batch)
    out: list[list[Reason]] = []
    for k, p in enumerate(batch):
        reasons = p.head
        if k in patterns:
            reasons += patterns[k]
        if k in piis:
            reasons += piis[k]
        if p.tail:
            reasons += p.tail
        out.append(reasons)
    return out


def evaluate_batch(
    policies: Sequence[Policy],
    events: Sequence[IngestEvent],
    states: Sequence[GuardrailState | None] | None = None,
    budgets: Sequence[ScanBudget | None] | None = None,
) -> list[list[Reason]]:
    """``[evaluate(policies[i], events[i], states[i], budgets[i]) for i ...]``, scanned in
    chunks of :data:`CHUNK_EVENTS`."""
    n = len(events)
    sts = states if states is not None else [None] * n
    bus = budgets if budgets is not None else [None] * n
    out: list[list[Reason]] = []
    for lo in range(0, n, CHUNK_EVENTS):
        hi = lo + CHUNK_EVENTS
        out += finish([
            plan(p, e, s, b)
            for p, e, s, b in zip(policies[lo:hi], events[lo:hi], sts[lo:hi], bus[lo:hi],
                                  strict=True)
        ])
    return out
