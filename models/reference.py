"""A pure-Python reference of one chain's engine: the same algorithm as ``lua/observe.lua`` and
``lua/feedback.lua``, in memory, composed from the pure rules in ``models/``.

Tests run one suite against both and require identical answers, so the Lua can be trusted to do
what the readable Python says. It is also a fast way to experiment with detection rules.

>>> from models.params import EngineParams
>>> chain = ReferenceChain(EngineParams())
>>> a = chain.observe("e1", "r1", "n1", action="crm.read")
>>> (a.from_node, a.to_node, a.anomalous, a.runs)
('^', 'n1', True, 1)
>>> chain.observe("e1", "r1", "n1").duplicate
True
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from models.decay import decay_count, row_totals
from models.escape import shape_escape
from models.modes import LOCKED, distribution_change, is_unlearnable, next_mode
from models.nodes import END, OVERFLOW, START
from models.observation import Observation
from models.params import ACTION_CODES, COUNT_SCALE, EngineParams
from models.scoring import (
    action_judged,
    backoff_probability,
    is_anomalous,
    needs_backoff,
    repeat_limit,
    score,
    threshold,
)
from models.tuning import tune

__all__ = ["END", "OVERFLOW", "START", "ReferenceChain"]

#: A held transition: from, to, the previous event's action, this event's action and its key-path
#: hashes (None: the shape vocabulary is not tracked, ``shape_escape = "off"``).
_Pending = tuple[str, str, str, str, str | None]


@dataclass
class _Assessed:
    from_node: str
    to_node: str
    prev_action: str
    action: str
    count: int
    row_total: int
    bits: float
    limit: float
    anomalous: bool
    to_new: bool
    backoff: bool
    #: count of the action transition (-1 when ``unlearnable_rule`` is "shapes": not tracked)
    act_count: int = -1
    #: the move's score by the action model when the chain is judged on its step order
    #: (unlearnable, learnable order; anomalous when over the floor), else -1
    order_bits: float = -1.0
    #: the event's key-path hashes as scored ("" when none are read)
    paths: str = ""
    #: the probability came from the shape escape (its threshold includes escape_floor_bits)
    escaped: bool = False


@dataclass
class _Run:
    last: str | None = None
    last_action: str = START
    repeats: int = 0
    ended: bool = False
    answers: dict[str, Observation] = field(default_factory=dict)
    held: dict[str, list[_Pending]] = field(default_factory=dict)
    #: the back-to-back streaks a held event carries, (node, length): an approval learns them
    held_streaks: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


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
    #: Learned events when the last checkpoint ran (a checkpoint needs some learned since).
    events_at_checkpoint: int = 0
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
    #: Coarse (action-level) counts of the back-off model, fields as in lua/observe.lua.
    coarse: dict[str, int] = field(default_factory=dict)
    #: Number of a/n fields in ``coarse`` (bounded by ``edge_cap``).
    nc: int = 0
    #: New transitions and transitions seen, halved at every checkpoint (novelty rate).
    novel: int = 0
    seen: int = 0
    unlearnable: bool = False
    #: New and all action transitions (halved at every checkpoint), and whether the chain is
    #: unlearnable but judged on its step order (``unlearnable_rule``).
    act_novel: int = 0
    act_seen: int = 0
    by_action: bool = False
    #: The open streak (run id, action, back-to-back repeats): the last learned event of that run
    #: repeated its action (whatever the shape) and the run has not shown the streak's end to
    #: this chain (another action, or end_of_run). A run's part in a chain often ends without either — the run goes on, and
    #: ends, on another service, or its agent never sends end_of_run — so the streak is learned
    #: as finished after the first event of another run (lua/observe.lua, meta ``ps``).
    open_streak: tuple[str, str, int] | None = None

    def __post_init__(self) -> None:
        if self.sigma is None:
            self.sigma = self.params.sigma_multiplier
        if self.fallback is None:
            self.fallback = self.params.fallback_bits
        if self.eligible_chain:
            self.eligible = True

    @property
    def holds_flags(self) -> bool:
        """A chain judged on its step order never locks: past the runs that would have locked
        it, its soft-lock is no probation, so what it flags is held back like a pause (or its
        anomalies would be learned by repetition)."""
        return (self.unlearnable and self.by_action
                and self.run_count >= self.params.min_runs_locked)

    # --- state helpers (mirror includes/chain_state.lua) --------------------------------
    @property
    def footing(self) -> int:
        """Runs, but never more than the events learned (allowed, or held and approved): runs
        of paused events never approved give a chain no footing and no promotion."""
        return min(self.run_count, self.events)

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

    def _count_coarse(self, part: str, total: str) -> bool:
        """Count a field of the back-off model; True when the field was new (and created)."""
        new = self.coarse.get(part, 0) == 0
        if new:
            if self.nc >= self.params.edge_cap:
                return False
            self.nc += 1
        self.coarse[part] = self.coarse.get(part, 0) + COUNT_SCALE
        self.coarse[total] = self.coarse.get(total, 0) + COUNT_SCALE
        return new

    def _learn_shape(self, action: str, paths: str) -> None:
        """A shape new to its action was learned: one more distinct shape ("T"); its key paths
        join the action's vocabulary ("p", bounded by the edge cap like every field); an event
        that brought a path new to the action counts ("X"). Plain counts, never decayed."""
        f = f"T\t{action}"
        self.coarse[f] = self.coarse.get(f, 0) + 1
        fresh = False
        for h in (x for x in paths.split(",") if x):
            f = f"p\t{action}\t{h}"
            if self.coarse.get(f, 0) == 0:
                fresh = True
                if self.nc < self.params.edge_cap:
                    self.nc += 1
                    self.coarse[f] = 1
        if fresh:
            f = f"X\t{action}"
            self.coarse[f] = self.coarse.get(f, 0) + 1

    def _count_action(self, prev_action: str, action: str, to: str, paths: str | None,
                      vocabulary: bool = True) -> None:
        """Count the back-off model's transition: previous action → action, action → node (and,
        when ``paths`` is not None, the action's learned events and, unless ``vocabulary`` is
        False, its shape vocabulary)."""
        self._count_coarse(f"a\t{prev_action}\t{action}", f"A\t{prev_action}")
        if to != END:
            new = self._count_coarse(f"n\t{action}\t{to}", f"N\t{action}")
            if paths is not None:  # the action's learned events, never decayed
                f = f"U\t{action}"
                self.coarse[f] = self.coarse.get(f, 0) + 1
            if new and paths is not None and vocabulary:
                self._learn_shape(action, paths)

    def _escape(self, action: str, action_count: int, paths: str) -> float:
        """``p(shape | action)`` of a shape never seen for its known action (models/escape.py)."""
        rule = self.params.shape_escape
        new_paths = sum(
            1 for h in paths.split(",") if h and self.coarse.get(f"p\t{action}\t{h}", 0) == 0
        )
        return shape_escape(
            rule, shapes=self.coarse.get(f"T\t{action}", 0), action_count=action_count,
            path_events=self.coarse.get(f"X\t{action}", 0), new_path=paths == "" or new_paths > 0,
            scale=COUNT_SCALE, new_paths=new_paths,
            field_support=self.params.field_escape_support,
        )

    def _learn_streak(self, node: str, length: int) -> None:
        """Learn a finished back-to-back streak of an action (``node`` here: the repeat limit
        counts an action's repeats, whatever their shapes): it becomes the longest learned when
        it is longer — in shadow freely (the chain learns what it sees), in soft-lock only if it
        stayed within the limit (an anomalous loop is not learned, and a streak cannot raise its
        own limit while it runs), once locked never (a streak within the limit would raise it by
        half again, run after run)."""
        p = self.params
        f = f"r\t{node}"
        longest = self.coarse.get(f, 0)
        # in shadow freely, in soft-lock within the limit, locked never (lua/observe.lua)
        if longest < length and (self.mode == 0 or (self.mode == 1 and length <= repeat_limit(
                longest, factor=p.repeat_factor, margin=p.repeat_margin))):
            self.coarse[f] = length

    def _settle_streaks(self, run_id: str, node: str, repeats: int, *, learned: bool,
                        end_of_run: bool) -> None:
        """After an event of ``run_id``: another run's open streak is over for this chain
        (learned as finished); then this run's streak is open (a learned repeat, no run end) or
        there is none."""
        if self.open_streak is not None and self.open_streak[0] != run_id:
            self._learn_streak(self.open_streak[1], self.open_streak[2])
            self.open_streak = None
        if not learned:
            return  # a held event: the run did not move, its open streak stays open
        if repeats > 0 and not end_of_run:
            self.open_streak = (run_id, node, repeats)
        elif self.open_streak is not None and self.open_streak[0] == run_id:
            self.open_streak = None

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
    def _checkpoint(self, floor: int = 0) -> int:
        p = self.params
        self.change = distribution_change(self.edges, self.snapshot)
        # judged until the chain locks: a locked chain keeps judging every transition
        self.unlearnable = self.mode != LOCKED and is_unlearnable(
            self.novel, self.seen, runs=self.run_count, params=p
        )
        novelty = self.novel / self.seen if self.seen > 0 else 0.0
        self.novel, self.seen = self.novel // 2, self.seen // 2
        self.by_action = (
            self.unlearnable and p.unlearnable_rule != "shapes" and self.act_seen > 0
            and not is_unlearnable(self.act_novel, self.act_seen, runs=self.run_count, params=p)
        )
        self.act_novel, self.act_seen = self.act_novel // 2, self.act_seen // 2
        mode, forced = next_mode(
            self.mode, runs=self.footing, change=self.change, eligible=self.eligible, params=p,
            unlearnable=self.unlearnable, novelty=novelty, by_action=self.by_action,
            floor=floor,
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
        uniform = p.decay == "uniform"
        self.edges = {
            f: decay_count(c, ppm, COUNT_SCALE, uniform=uniform) for f, c in self.edges.items()
        }
        self.rows = row_totals(self.edges)
        coarse: dict[str, int] = {}
        for f, c in self.coarse.items():
            kind = f[0]
            if kind in ("r", "T", "X", "p", "U"):
                coarse[f] = c
            elif kind in ("a", "n"):
                d = decay_count(c, ppm, COUNT_SCALE, uniform=uniform)
                coarse[f] = d
                total = ("A" if kind == "a" else "N") + f[1:].rsplit("\t", 1)[0]
                coarse[total] = coarse.get(total, 0) + d
        self.coarse = coarse
        self.snapshot = dict(self.edges)
        return changed

    # --- scoring ----------------------------------------------------------------------------
    def _threshold(self) -> float:
        p = self.params
        assert self.sigma is not None and self.fallback is not None
        return threshold(
            self.window,
            window=p.window_for(self.footing),
            sigma=self.sigma,
            fallback=self.fallback,
            floor=p.floor_bits,
            robust=p.window_stat == "robust",
            ceiling=p.ceiling_bits,
        )

    def _assess(
        self, src: str, to: str, prev_action: str, action: str, paths: str = ""
    ) -> _Assessed:
        p = self.params
        to = self._bounded_to(src, to)
        c = self.edges.get(f"{src}\t{to}", 0)
        r = self.rows.get(src, 0)
        # an action the chain never learned (while the back-off model has room to count it) is
        # a new step however familiar its payload's shape: a transition never seen, no back-off
        act_new = (to != END and self.nc < p.edge_cap
                   and self.coarse.get(f"N\t{action}", 0) == 0)
        # likewise a known action after one it never followed, even in a known shape
        pair_new = (not act_new and to != END and self.nc < p.edge_cap
                    and self.coarse.get(f"a\t{prev_action}\t{action}", 0) == 0)
        if act_new or pair_new:
            c = 0
        prob = c / r if r > 0 else 0.0
        backoff = escaped = False
        if p.backoff_weight > 0 and not (act_new or pair_new) and needs_backoff(
            c, r, min_support=p.min_support, scale=COUNT_SCALE
        ):
            if to == END:
                node_count, node_row = 1, 1
            else:
                node_count = self.coarse.get(f"n\t{action}\t{to}", 0)
                node_row = self.coarse.get(f"N\t{action}", 0)
            node_p = None
            # an action seen min_support times at least: an escape estimated from a handful of
            # calls (a new chain, a new action) would excuse nearly anything
            if (node_count == 0 and node_row >= p.min_support * COUNT_SCALE
                    and node_row > 0 and p.shape_escape != "off"):
                # against the action's learned events, undecayed like the vocabulary
                node_p = self._escape(action, max(node_row,
                                                  self.coarse.get(f"U\t{action}", 0) * COUNT_SCALE),
                                      paths)
            coarse = backoff_probability(
                prob, weight=p.backoff_weight,
                act_count=self.coarse.get(f"a\t{prev_action}\t{action}", 0),
                act_row=self.coarse.get(f"A\t{prev_action}", 0),
                node_count=node_count, node_row=node_row, node_p=node_p,
            )
            backoff = coarse > prob
            escaped = backoff and node_p is not None
            prob = coarse
        bits = score(prob, p.epsilon)
        limit = self._threshold()
        if escaped:
            # scored by the shape escape: its own floor (EngineParams.escape_floor_bits)
            limit = max(limit, p.escape_floor_bits)
        to_new = not self._known(to)
        anomalous = is_anomalous(
            bits, limit, row_total=r, to_is_new=to_new or act_new,
            min_support=p.min_support if p.backoff_weight <= 0 else 0, scale=COUNT_SCALE,
            unlearnable=self.unlearnable,
        )
        act_count, order_bits = -1, -1.0
        if p.unlearnable_rule != "shapes":
            act_count = self.coarse.get(f"a\t{prev_action}\t{action}", 0)
            if self.unlearnable and self.by_action:
                act_row = self.coarse.get(f"A\t{prev_action}", 0)
                order_bits = score(act_count / act_row if act_row > 0 else 0.0, p.epsilon)
                anomalous = action_judged(
                    anomalous, act_count=act_count, act_row=act_row, epsilon=p.epsilon,
                    floor=p.floor_bits, rule=p.unlearnable_rule,
                )
        return _Assessed(src, to, prev_action, action, c, r, bits, limit, anomalous, to_new,
                         backoff, act_count, order_bits, paths, escaped)

    def _push(self, bits: float) -> None:
        self.window.insert(0, bits)
        del self.window[self.params.window_large :]

    def _action(self, anomalous: bool, mode_floor: int = 0) -> str:
        mode = mode_floor if self.mode == 0 else self.mode
        if not anomalous or mode == 0:
            return "allow"
        return self.params.soft_action if mode == 1 else self.locked_action

    def observe_unless_unsure(
        self, event_id: str, run_id: str, node: str, *, unsure: bool = False, **kw: Any
    ) -> Observation | None:
        """:meth:`observe`, or None (nothing changed) where lua/observe.lua stops a batch: the
        event's mode floor is not known for sure yet (``unsure``, a digit 3..5) and would decide
        its action — the chain in shadow, and the event anomalous or starting a
        run that checkpoints."""
        run = self.runs.get(run_id)
        if (unsure and self.mode == 0
                and (run is None or event_id not in run.answers)):
            starts = run is None or run.last is None or run.ended
            if (kw.get("learn", True) and starts
                    and (self.run_count + 1) % self.params.checkpoint_runs == 0):
                return None
            if copy.deepcopy(self).observe(event_id, run_id, node, **kw).anomalous:
                return None
        return self.observe(event_id, run_id, node, **kw)

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
        action: str = "",
        paths: str = "",
    ) -> Observation:
        run = self.runs.setdefault(run_id, _Run())
        prior = run.answers.get(event_id)
        if prior is not None:
            # the stored answer keeps no copy of the event's own node (lua/observe.lua: a
            # redelivery is the same event): an edge that ended in it names the node given now
            to = prior.to_node if prior.to_node in (END, OVERFLOW) else node
            return replace(prior, duplicate=True, to_node=to)
        changed = 0
        # the floor holds while the chain is in shadow (lua/observe.lua)
        floor = mode_floor if self.mode == 0 else 0
        src, prev_action = run.last, run.last_action
        if src is None or run.ended:
            src, prev_action = START, START
            if learn:
                self.run_count += 1
                # only after something was learned since the last one (lua/observe.lua)
                if (self.run_count % self.params.checkpoint_runs == 0
                        and self.events != self.events_at_checkpoint):
                    changed = self._checkpoint(floor)
                    self.events_at_checkpoint = self.events
        if learn and high_priority:
            self.eligible = True
        if self.params.shape_escape not in ("combos", "paths", "each"):
            paths = ""  # lua/observe.lua reads key paths only for these rules
        e = self._assess(src, node, prev_action, action, paths)
        tail = self._assess(e.to_node, END, action, END) if end_of_run else None
        assessed = [e] if tail is None else [e, tail]
        # back-to-back repeats of the action, whatever the shape (lua/observe.lua)
        repeats = run.repeats + 1 if action == prev_action else 0
        longest_field = f"r\t{action}"
        longest = self.coarse.get(longest_field, 0)
        limit = repeat_limit(longest, factor=self.params.repeat_factor,
                             margin=self.params.repeat_margin)
        looping = self.params.repeat_factor > 0 and repeats > limit
        # back-to-back streaks that end here: the previous node's, and this node's at a run end
        streaks = []
        if action != prev_action and run.repeats > 0:
            streaks.append((prev_action, run.repeats))
        if end_of_run and repeats > 0:
            streaks.append((action, repeats))
        anomalous = e.anomalous or (tail is not None and tail.anomalous) or looping
        verdict = self._action(anomalous, floor)
        lowest_held = 1 if self.params.protect_flags or self.holds_flags else 2
        held = self.params.protect and (ACTION_CODES.index(verdict) >= lowest_held or hold)
        shown = e
        if tail is not None and (tail.bits - tail.limit) > (e.bits - e.limit):
            shown = tail
        if learn and not held:  # the learned stream's novelty (lua/observe.lua)
            for a in assessed:
                self.seen += 1
                if a.count == 0:
                    self.novel += 1
                if a.act_count >= 0:
                    self.act_seen += 1
                    if a.act_count == 0:
                        self.act_novel += 1
        if learn and not held:
            tracked = self.params.shape_escape != "off"
            # a locked chain learns a shape the escape let through, not a wider vocabulary
            # (EngineParams.freeze_vocabulary; lua/observe.lua)
            frozen = self.params.freeze_vocabulary and self.mode == LOCKED and e.escaped
            for a in assessed:
                self._count(a.from_node, a.to_node)
                self._count_action(a.prev_action, a.action, a.to_node,
                                   a.paths if tracked else None, vocabulary=not frozen)
            for looped, length in streaks:
                self._learn_streak(looped, length)
            self.events += 1
        elif learn and held:
            tracked = self.params.shape_escape != "off"
            run.held[event_id] = [(a.from_node, a.to_node, a.prev_action, a.action,
                                   a.paths if tracked else None) for a in assessed]
            # what an approval teaches (lua/observe.lua "=" lines): the streak this event ends,
            # and its own repeat — a held loop, approved, is a loop of that length
            carried = [(prev_action, run.repeats)] if action != prev_action and (
                run.repeats > 0) else []
            if repeats > 0:
                carried.append((action, repeats))
            run.held_streaks[event_id] = carried
        # the window holds normal step scores, not escaped shapes' (lua/observe.lua)
        if learn and not e.anomalous and not e.escaped:
            self._push(e.bits)
        if learn and tail is not None and not tail.anomalous and not tail.escaped:
            self._push(tail.bits)
        if learn:
            self._settle_streaks(run_id, action, repeats, learned=not held,
                                 end_of_run=end_of_run)
        if held:
            # a held call did not happen: the run stays where it was (lua/observe.lua); a run
            # whose first call is held has started, still at its start
            if src == START:
                run.last, run.ended, run.last_action, run.repeats = START, False, START, 0
        else:
            run.last, run.ended = (END, True) if end_of_run else (e.to_node, False)
            run.last_action = END if end_of_run else action
            run.repeats = 0 if end_of_run else repeats
        answer = Observation(
            duplicate=False,
            from_node=shown.from_node,
            to_node=shown.to_node,
            count=shown.count,
            row_total=shown.row_total,
            score=shown.bits,
            threshold=shown.limit,
            anomalous=anomalous,
            mode=self.mode,
            action=verdict,
            held=held,
            runs=self.footing,
            mode_change=changed,
            to_new=shown.to_new,
            backoff=shown.backoff,
            unlearnable=self.unlearnable,
            repeats=repeats,
            repeat_limit=limit,
        )
        run.answers[event_id] = answer
        return answer

    def feedback(self, run_id: str, event_id: str, decision: str) -> bool:
        """Approve (learn the held transitions, widen) or reject (tighten); False if not held."""
        run = self.runs.get(run_id)
        pending = run.held.pop(event_id, None) if run is not None else None
        if pending is None:
            return False
        assert run is not None
        carried = run.held_streaks.pop(event_id, [])
        if decision == "approve":
            for src, to, prev_action, action, paths in pending:
                to = self._bounded_to(src, to)
                self._count(src, to)
                self._count_action(prev_action, action, to, paths)
            # a held loop, approved, raises the repeat limit to its length (lua/feedback.lua)
            for looped, length in carried:
                f = f"r\t{looped}"
                if self.coarse.get(f, 0) < length:
                    self.coarse[f] = length
            self.events += 1
        assert self.sigma is not None and self.fallback is not None
        self.sigma, self.fallback = tune(self.sigma, self.fallback, decision, self.params)
        return True
