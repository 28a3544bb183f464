"""A pure-Python reference of one chain's engine: the same algorithm as ``lua/observe.lua`` and
``lua/feedback.lua``, in memory, composed from the pure rules in ``models/``.

Tests run one suite against both and require identical answers, so the Lua can be trusted to do
what the readable Python says. It is also a fast way to experiment with detection rules.

>>> from models.params import EngineParams
>>> chain = ReferenceChain(EngineParams())
>>> a = chain.observe("e1", "r1", "n1")
>>> (a.from_node, a.to_node, a.anomalous, a.runs)
('^', 'n1', True, 1)
>>> chain.observe("e1", "r1", "n1").duplicate
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from models.decay import decay_count
from models.modes import distribution_change, next_mode
from models.params import ACTION_CODES, COUNT_SCALE, EngineParams
from models.scoring import is_anomalous, score, threshold
from models.tuning import tune

__all__ = ["END", "OVERFLOW", "START", "Answer", "ReferenceChain"]

START, END, OVERFLOW = "^", "$", "~"


@dataclass(frozen=True, slots=True)
class Answer:
    duplicate: bool
    from_node: str
    to_node: str
    count: int
    row_total: int
    score: float
    threshold: float
    anomalous: bool
    mode: int
    action: str
    held: bool
    runs: int
    mode_change: int
    to_new: bool


@dataclass
class _Assessed:
    from_node: str
    to_node: str
    count: int
    row_total: int
    bits: float
    limit: float
    anomalous: bool
    to_new: bool


@dataclass
class _Run:
    last: str | None = None
    ended: bool = False
    answers: dict[str, Answer] = field(default_factory=dict)
    held: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class ReferenceChain:
    params: EngineParams
    eligible_chain: bool = False
    locked_action: str = "pause"
    edges: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    snapshot: dict[str, int] = field(default_factory=dict)
    window: list[float] = field(default_factory=list)
    runs: dict[str, _Run] = field(default_factory=dict)
    run_count: int = 0
    mode: int = 0
    sigma: float | None = None
    fallback: float | None = None
    eligible: bool = False
    nn: int = 0
    ne: int = 0
    overflow: int = 0
    change: float = 1.0
    forced: bool = False
    events: int = 0

    def __post_init__(self) -> None:
        if self.sigma is None:
            self.sigma = self.params.sigma_multiplier
        if self.fallback is None:
            self.fallback = self.params.fallback_bits
        if self.eligible_chain:
            self.eligible = True

    # --- state helpers (mirror includes/chain_state.lua) --------------------------------
    def _known(self, node: str) -> bool:
        return node in (START, END) or node in self.nodes

    def _bounded_to(self, src: str, to: str) -> str:
        p = self.params
        if to != END and not self._known(to) and self.nn >= p.node_cap:
            self.overflow += 1
            return OVERFLOW
        if to != END and self.edges.get(f"{src}\t{to}", 0) == 0 and self.ne >= p.edge_cap:
            self.overflow += 1
            return OVERFLOW
        return to

    def _count(self, src: str, to: str) -> None:
        f = f"{src}\t{to}"
        if self.edges.get(f, 0) == 0:
            self.ne += 1
        self.edges[f] = self.edges.get(f, 0) + COUNT_SCALE
        self.rows[src] = self.rows.get(src, 0) + COUNT_SCALE
        if not self._known(to):
            self.nodes.add(to)
            if to != OVERFLOW:
                self.nn += 1

    # --- checkpoint (mirror includes/checkpoint.lua) ------------------------------------
    def _checkpoint(self) -> int:
        p = self.params
        self.change = distribution_change(self.edges, self.snapshot)
        mode, forced = next_mode(
            self.mode, runs=self.run_count, change=self.change, eligible=self.eligible, params=p
        )
        changed = 0
        if mode != self.mode:
            self.mode = mode
            changed = 1
            if forced:
                self.forced = True
                changed = 2
                assert self.sigma is not None
                self.sigma = max(self.sigma, p.forced_sigma)
        ppm = p.decay_ppm()
        self.edges = {f: decay_count(c, ppm, COUNT_SCALE) for f, c in self.edges.items()}
        rows: dict[str, int] = {}
        for f, c in self.edges.items():
            src = f.split("\t", 1)[0]
            rows[src] = rows.get(src, 0) + c
        self.rows = rows
        self.snapshot = dict(self.edges)
        return changed

    # --- scoring ----------------------------------------------------------------------------
    def _threshold(self) -> float:
        p = self.params
        assert self.sigma is not None and self.fallback is not None
        return threshold(
            self.window,
            window=p.window_for(self.run_count),
            sigma=self.sigma,
            fallback=self.fallback,
            floor=p.floor_bits,
            robust=p.window_stat == "robust",
        )

    def _assess(self, src: str, to: str) -> _Assessed:
        p = self.params
        to = self._bounded_to(src, to)
        c = self.edges.get(f"{src}\t{to}", 0)
        r = self.rows.get(src, 0)
        prob = c / r if r > 0 else 0.0
        bits = score(prob, p.epsilon)
        limit = self._threshold()
        to_new = not self._known(to)
        anomalous = is_anomalous(
            bits, limit, row_total=r, to_is_new=to_new, min_support=p.min_support,
            scale=COUNT_SCALE,
        )
        return _Assessed(src, to, c, r, bits, limit, anomalous, to_new)

    def _push(self, bits: float) -> None:
        self.window.insert(0, bits)
        del self.window[self.params.window_large :]

    def _action(self, anomalous: bool, mode_floor: int = 0) -> str:
        mode = mode_floor if self.mode == 0 else self.mode
        if not anomalous or mode == 0:
            return "allow"
        return self.params.soft_action if mode == 1 else self.locked_action

    def observe(
        self,
        event_id: str,
        run_id: str,
        node: str,
        *,
        high_priority: bool = False,
        end_of_run: bool = False,
        hold: bool = False,
        learn: bool = True,
        mode_floor: int = 0,
    ) -> Answer:
        run = self.runs.setdefault(run_id, _Run())
        prior = run.answers.get(event_id)
        if prior is not None:
            return replace(prior, duplicate=True)
        changed = 0
        src = run.last
        if src is None or run.ended:
            src = START
            if learn:
                self.run_count += 1
                if self.run_count % self.params.checkpoint_runs == 0:
                    changed = self._checkpoint()
        if learn and high_priority:
            self.eligible = True
        e = self._assess(src, node)
        tail = self._assess(e.to_node, END) if end_of_run else None
        anomalous = e.anomalous or (tail is not None and tail.anomalous)
        action = self._action(anomalous, mode_floor)
        held = self.params.protect and (ACTION_CODES.index(action) >= 2 or hold)
        shown = e
        if tail is not None and (tail.bits - tail.limit) > (e.bits - e.limit):
            shown = tail
        if learn and not held:
            self._count(e.from_node, e.to_node)
            if tail is not None:
                self._count(tail.from_node, tail.to_node)
            self.events += 1
        elif learn and held:
            pending = [(e.from_node, e.to_node)]
            if tail is not None:
                pending.append((tail.from_node, tail.to_node))
            run.held[event_id] = pending
        if learn and not e.anomalous:
            self._push(e.bits)
        if learn and tail is not None and not tail.anomalous:
            self._push(tail.bits)
        run.last, run.ended = (END, True) if end_of_run else (e.to_node, False)
        answer = Answer(
            duplicate=False,
            from_node=shown.from_node,
            to_node=shown.to_node,
            count=shown.count,
            row_total=shown.row_total,
            score=shown.bits,
            threshold=shown.limit,
            anomalous=anomalous,
            mode=self.mode,
            action=action,
            held=held,
            runs=self.run_count,
            mode_change=changed,
            to_new=shown.to_new,
        )
        run.answers[event_id] = answer
        return answer

    def feedback(self, run_id: str, event_id: str, decision: str) -> bool:
        """Approve (learn the held transitions, widen) or reject (tighten); False if not held."""
        run = self.runs.get(run_id)
        pending = run.held.pop(event_id, None) if run is not None else None
        if pending is None:
            return False
        if decision == "approve":
            for src, to in pending:
                self._count(src, self._bounded_to(src, to))
            self.events += 1
        assert self.sigma is not None and self.fallback is not None
        self.sigma, self.fallback = tune(self.sigma, self.fallback, decision, self.params)
        return True
