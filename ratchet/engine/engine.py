"""The behavioural engine: events → guardrails and Markov chains → verdicts.

Pure work (skeletons, node ids, chain identity, reasons, guardrail rules) comes from
``models/``; state lives in Redis, reached only through the stores. A learning batch costs two
round trips: one ``lua/guardrails.lua`` call per agent (:mod:`ratchet.engine.guard`) with a read
of the agents' service-mode records in the same pipeline, then one ``lua/observe.lua`` call per
chain (pipelined); the service-mode records a batch changes are written by a third, or handed to
the caller to send with the verdict save (``writes``: the worker's case). The guardrails go
first because an event a guardrail pauses or rejects is held back from
learning (protected learning). Each guardrail and the chain decide independently; the verdict
takes the strictest action and lists every reason. Guardrails apply in every mode: a chain in
shadow still gets the explicit rules' actions. Used by the Faust workers, ``ratchet replay``
and the benchmarks alike.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from models.audit import check_action_actor
from models.errors import UnavailableError
from models.events import IngestEvent
from models.explain import threshold_basis
from models.mode_floors import (
    change_position,
    changes,
    event_floors,
    floor_of,
    service_field,
)
from models.mode_floors import dependents as floor_dependents
from models.modes import MODE_NAMES
from models.nodes import ChainId, chain_for, node_id
from models.observation import DUPLICATE, WIDTH, Answer, Observation
from models.params import ACTION_CODES, COUNT_SCALE, UNLEARNABLE_JUDGED, EngineParams
from models.scoring import probability
from models.shape_memo import event_nodes, skeleton_hash_memo
from models.verdict import HOLDING, Reason, Verdict, strictest
from models.verdict_build import make_edge, make_verdict
from ratchet.engine.guard import Guardrails
from ratchet.engine.shape_paths import ShapePaths
from ratchet.store.audit import AuditLog
from ratchet.store.chains import UNSURE, ChainBatch, EngineStore, FeedbackResult, ObserveItem
from ratchet.store.engine_overrides import ProjectParams
from ratchet.store.guardrails import GuardStore
from ratchet.store.keys import Keys
from ratchet.store.labels import NodeLabeller
from ratchet.store.policies import ActivePolicy, PolicySource, StoredPolicies
from ratchet.store.round import Deferred, Round, ScriptCall
from ratchet.telemetry.batch import observe_many
from ratchet.telemetry.children import child
from ratchet.telemetry.metrics import (
    BATCH_EVENTS,
    EDGE_SCORE_BITS,
    ENGINE_ERRORS,
    EVENTS,
    FLOOR_ROUNDS,
    MODE_TRANSITIONS,
    SPECULATED,
    UNLEARNABLE_EVENTS,
)

__all__ = ["SPECULATE_EVENTS", "Engine", "count_answers", "count_observations", "markov_reason"]

_HIGH = frozenset(("high", "critical"))
#: Chain identities remembered per engine (cleared when full): chain_for hashes per call.
_CHAIN_MEMO = 65_536
#: Shape-escape rules that read an event's key paths (models/escape.py).
_PATH_RULES = frozenset(("combos", "paths", "each"))
#: Batches of at most this many events observe speculatively beside the guardrail state
#: (:meth:`Engine._speculated`: learning at once when no guardrail can hold an event, else dry)
#: by default: one round trip less — meant for single events, not for bulk batches, where the
#: script's work dominates.
SPECULATE_EVENTS = 16
#: Rounds of observe calls after the first for chains whose mode floor may change inside a
#: batch; the last floors what is left by what is known (Engine._floored_rounds).
FLOOR_ROUNDS_MAX = 16

#: Most events of one agent in one guardrails call and one chain's observe call (Engine.decide
#: splits an agent's longer run of events into parts). A worker merges the envelopes waiting in
#: its lane (up to 5,000 events); one agent's flood of new runs then made one guardrails call of
#: 5,000 events and 10,000 run keys hold Redis for ≈ 300 ms (outside attack run): ≈ 30–60 µs
#: per event of a new run. 1,000 is a bulk envelope, the size the gateway already accepts.
AGENT_EVENTS = 1_000


def agent_parts(events: Sequence[IngestEvent], size: int) -> list[list[int]]:
    """Indices of ``events`` in parts where no agent has more than ``size`` events: part k
    holds each agent's k-th ``size`` events, in input order (one part when none has more)."""
    parts: list[list[int]] = []
    seen: dict[tuple[str, str], int] = {}
    for i, ev in enumerate(events):
        agent = (ev.project_id, ev.agent_id)
        k = seen.get(agent, 0) // size
        seen[agent] = seen.get(agent, 0) + 1
        if k == len(parts):
            parts.append([])
        parts[k].append(i)
    return parts


def markov_reason(obs: Observation, params: EngineParams) -> Reason | None:
    """The explanation of an anomalous transition (None when the detector saw nothing)."""
    if not obs.anomalous:
        return None
    p = probability(obs.count, obs.row_total)
    if obs.backoff:
        # the score came from the action model: p is what the score says, not count / row
        p = max(0.0, 2.0 ** -obs.score - params.epsilon)
    detail: dict[str, object] = {
        "score_bits": round(obs.score, 3),
        "threshold_bits": round(obs.threshold, 3),
        "p": p,
        "from": obs.from_node,
        "to": obs.to_node,
        "seen": obs.count / COUNT_SCALE,
        "from_seen": obs.row_total / COUNT_SCALE,
        "new_node": obs.to_new,
        "mode": MODE_NAMES[obs.mode],
        "threshold_from": threshold_basis(obs.threshold, params, backoff=obs.backoff),
        "window_n": params.window_for(obs.runs),
    }
    if obs.repeats > obs.repeat_limit:
        detail["repeats"] = obs.repeats
        detail["repeat_limit"] = obs.repeat_limit
        detail["loop_note"] = "this call repeated back to back more often than ever learned"
    if obs.backoff:
        detail["backoff"] = ("scored by p(action | previous action) · p(shape | action); a shape "
                             "never seen for its action: the action's escape (shape_escape)")
    if obs.unlearnable:
        detail["unlearnable"] = True
        detail["unlearnable_note"] = (
            "this chain's rate of new transitions is above the limit: it never locks and only "
            + UNLEARNABLE_JUDGED[params.unlearnable_rule]
        )
    if obs.mode == 0 and obs.action == "allow":
        detail["note"] = "shadow mode: learning, reported but not enforced"
    elif obs.mode == 0:
        detail["note"] = (
            "a service new to this agent, which is established on its other services: "
            "enforced by their mode while this chain learns"
        )
    return Reason("markov", obs.action, detail)


def count_observations(answers: Sequence[Sequence[Observation]]) -> None:
    """Engine metrics of one batch: label lookups once per label set, not once per event."""
    tally: Counter[tuple[int, bool]] = Counter()
    observe_score = EDGE_SCORE_BITS.observe
    unlearnable = 0
    for answer in answers:
        for obs in answer:
            if obs.duplicate:
                continue
            tally[(obs.mode, obs.anomalous)] += 1
            unlearnable += obs.unlearnable
            observe_score(obs.score)
            if obs.mode_change:
                MODE_TRANSITIONS.labels(
                    to=MODE_NAMES[obs.mode], forced="true" if obs.mode_change == 2 else "false"
                ).inc()
    for (mode, anomalous), n in tally.items():
        child(EVENTS, MODE_NAMES[mode], "true" if anomalous else "false").inc(n)
    if unlearnable:
        UNLEARNABLE_EVENTS.inc(unlearnable)


def count_answers(answers: Sequence[Answer]) -> None:
    """:func:`count_observations` read straight off the observe replies (no records built)."""
    tally: Counter[int] = Counter()
    scores: list[float] = []  # observed once per batch (ratchet/telemetry/batch.py)
    unlearnable = 0
    for answer in answers:
        for score, _, _, _, flags, _, _, _ in answer.recs:
            if flags & DUPLICATE:
                continue  # a redelivery: counted the first time
            tally[flags & 0x61] += 1  # anomalous bit + mode bits
            unlearnable += (flags >> 4) & 1
            scores.append(score)
            change = (flags >> 9) & 3
            if change:
                MODE_TRANSITIONS.labels(
                    to=MODE_NAMES[(flags >> 5) & 3], forced="true" if change == 2 else "false"
                ).inc()
    for key, n in tally.items():
        child(EVENTS, MODE_NAMES[(key >> 5) & 3], "true" if key & 1 else "false").inc(n)
    observe_many(EDGE_SCORE_BITS, scores)
    if unlearnable:
        UNLEARNABLE_EVENTS.inc(unlearnable)


@dataclass
class Engine:
    store: EngineStore
    params: EngineParams
    rich: bool = False
    clock: Callable[[], float] = time.time
    #: None: the Markov chain alone (benchmarks of the chain, engine-only tests).
    guardrails: Guardrails | None = None
    #: Per-project engine overrides (workers); None: ``params`` for every project.
    overrides: ProjectParams | None = None
    #: Writes readable node labels beside the chains (None: no labels, e.g. benchmarks).
    labels: NodeLabeller | None = None
    #: Batches of at most this many events observe dry first when the caller takes ``writes``
    #: (``RATCHET_WORKER_DRY_OBSERVE_EVENTS``; 0 = never).
    speculate_events: int = SPECULATE_EVENTS
    #: Most events of one agent decided in one set of script calls (:data:`AGENT_EVENTS`).
    agent_events: int = AGENT_EVENTS
    _chains: dict[tuple[str, str, str, str], ChainId] = dc_field(default_factory=dict, repr=False)
    _shape_paths: ShapePaths = dc_field(default_factory=ShapePaths, repr=False)
    #: The service-mode records last read or written, per (project, agent): mode floors are
    #: predicted by them (:meth:`_speculated`), never trusted without the read that confirms.
    _modes: dict[tuple[str, str], dict[str, tuple[int, int]]] = dc_field(
        default_factory=dict, repr=False)

    @classmethod
    def create(
        cls,
        client: Redis | RedisCluster,
        *,
        keys: Keys | None = None,
        params: EngineParams | None = None,
        rich: bool = False,
        run_ttl_s: int = 86_400,
        chain_ttl_s: int = 30 * 86_400,
        guardrails: bool = True,
        policies: PolicySource | None = None,
        policy_keys: Keys | None = None,
        policy_refresh_s: float = 1.0,
        event_time: bool = False,
        project_overrides: bool = False,
        labels: bool = True,
    ) -> Engine:
        """An engine on ``client``. Guardrails are on unless ``guardrails=False``; their
        policies come from ``policies``, else from Redis (``policy_keys``, default ``keys``:
        the project's stored policy, re-checked every ``policy_refresh_s`` seconds).
        ``project_overrides``: each project's stored engine override (same keys, same
        refresh) applies on top of ``params``."""
        params = params or EngineParams()
        keys = keys or Keys()
        store = EngineStore(client, keys, params, run_ttl_s=run_ttl_s, chain_ttl_s=chain_ttl_s)
        guards = None
        if guardrails:
            source = policies or StoredPolicies(
                client, policy_keys or keys, refresh_s=policy_refresh_s
            )
            guards = Guardrails(
                GuardStore(client, keys, run_ttl_s=run_ttl_s, order_ttl_s=chain_ttl_s), source,
                keys, event_time=event_time
            )
        overrides = ProjectParams(client, policy_keys or keys, params,
                                  refresh_s=policy_refresh_s) if project_overrides else None
        labeller = NodeLabeller(client, keys, params.node_cap, chain_ttl_s) if labels else None
        return cls(store=store, params=params, rich=rich, guardrails=guards, labels=labeller,
                   overrides=overrides)

    def chain_of(self, event: IngestEvent) -> ChainId:
        return chain_for(event.project_id, event.agent_id, event.service, event.priority)

    def node_of(self, event: IngestEvent) -> str:
        return node_id(
            skeleton_hash_memo(event.payload), service=event.service, action=event.action,
            rich=self.rich,
        )

    def _nodes(self, events: Sequence[IngestEvent]) -> tuple[list[str], list[str], list[str]]:
        """(Markov node, guardrail node, key-path digest) per event; the skeleton is hashed
        once, and remembered per payload structure (models/shape_memo.py: the same ids as
        models/skeleton.py). Digests only when a shape-escape rule reads key paths (else empty)."""
        markov: list[str] = []
        guard: list[str] = []
        digests: list[str] = []
        paths = self._shape_paths if (self.params.shape_escape in _PATH_RULES
                                      or self.overrides is not None) else None
        for ev in events:
            skel, rich = event_nodes(ev.payload, ev.service, ev.action)
            markov.append(rich if self.rich else skel)
            guard.append(rich)
            digests.append(paths.digest(skel, ev.payload) if paths is not None else "")
        return markov, guard, digests

    async def decide(
        self,
        events: Sequence[IngestEvent],
        *,
        learn: bool = True,
        trace_id: str = "",
        holds: Sequence[bool] | None = None,
        writes: Deferred | None = None,
    ) -> list[Verdict]:
        """Verdicts for ``events`` in order. An agent with more than :attr:`agent_events`
        events in the batch has them decided in consecutive parts, one after the other (the
        other agents' events in the first): a script call's time grows with its events, and
        one agent's flood must not hold Redis for everyone (verdicts do not depend on how
        events are batched). See :meth:`_decide`."""
        parts = agent_parts(events, self.agent_events) if len(events) > self.agent_events else []
        if len(parts) <= 1:
            return await self._decide(events, learn=learn, trace_id=trace_id, holds=holds,
                                      writes=writes)
        out: list[Verdict | None] = [None] * len(events)
        for indices in parts:
            # no deferred writes: the next part reads the service-mode records this one wrote
            got = await self._decide(
                [events[i] for i in indices], learn=learn, trace_id=trace_id,
                holds=None if holds is None else [holds[i] for i in indices])
            for i, verdict in zip(indices, got, strict=True):
                out[i] = verdict
        return [v for v in out if v is not None]

    async def _decide(
        self,
        events: Sequence[IngestEvent],
        *,
        learn: bool = True,
        trace_id: str = "",
        holds: Sequence[bool] | None = None,
        writes: Deferred | None = None,
    ) -> list[Verdict]:
        """Verdicts for ``events`` in order (one guardrails call per agent, then one observe
        call per chain; each set pipelined).

        ``writes``: when given, what a learning batch still has to write (the service-mode
        records it changed; for a small batch, its observe calls themselves) is handed to the
        caller to send with the verdict save — :meth:`ratchet.store.verdicts.VerdictStore.
        save_many` ``before`` — instead of being written here; the caller checks the answers
        with :meth:`Deferred.confirmed` (see :meth:`_speculated`).
        ``holds[i]`` marks an event held back from learning by the caller; events a guardrail
        pauses or rejects are held back too. Raises :class:`UnavailableError` when Redis
        cannot be reached (never a detection).
        """
        if not events:
            return []
        now = self.clock()
        now_ms = int(now * 1000)
        markov_nodes, guard_nodes, digests = self._nodes(events)
        groups = self._groups(events, markov_nodes, learn)
        agents = sorted({(ev.project_id, ev.agent_id) for ev in events})
        guard_reasons: list[tuple[Reason, ...]] | None = None
        try:
            per_project = await self.overrides.params(
                {c.project_id for c, _ in groups.values()}
            ) if self.overrides is not None else {}
            dry: list[tuple[list[str], list[Any]]] | None = None
            direct = False
            policies: Mapping[str, ActivePolicy] | None = None
            if (writes is not None and learn and holds is None
                    and len(events) <= self.speculate_events
                    and all(agent in self._modes for agent in agents)):
                predicted = self._batches(events, groups, markov_nodes, digests, None, None,
                                          self._modes, per_project)
                dry = [self.store.observe_call(b, learn=True, now_ms=now_ms) for b in predicted]
                # no guardrail of the policy can hold an event back (the default policy only
                # flags): the holds are known now, so chains past shadow learn in this round
                # trip (learn=3) and the second carries no observe call at all
                if self.guardrails is not None:
                    policies = await self.guardrails.policies.active(
                        {ev.project_id for ev in events})
                direct = policies is None or not any(
                    policies[ev.project_id].policy.can_hold(ev.service, ev.priority)
                    for ev in events)
            # the service-mode records do not depend on the guardrails: read them in the same
            # round trip as the guardrail state (one pipeline), and the dry observe calls too
            beside = Round(self.store.client)
            at = beside.extend(self.store.service_mode_reads(agents))
            dry_at: list[int] = []
            if dry is not None:
                observe = self.store.scripts["observe"]
                mode = 3 if direct else 2
                dry_at = beside.extend(
                    [ScriptCall(observe, k, [a[0], mode, *a[2:]]) for k, a in dry])
            if self.guardrails is not None:
                guard_reasons = await self.guardrails.check(
                    events, guard_nodes, now, beside=beside, policies=policies)
            else:
                await self.store.run(beside)
            seen = self.store.parse_service_modes(agents, [beside.answers[i] for i in at])
            self._remember(seen)
            batches = self._batches(events, groups, markov_nodes, digests, holds, guard_reasons, seen,
                                    per_project)
            also = self.labels.take() if self.labels is not None else []
            members = list(groups.values())
            def footing(project: str) -> int:  # a project's engine override may set its own
                return per_project.get(project, self.params).min_runs_soft
            waits = floor_dependents(
                [chain for chain, _ in members],
                lambda j: (events[i].run_id for i in members[j][1]),
                seen, footing) if learn else [False] * len(batches)
            answered = [beside.answers[i] for i in dry_at]
            if direct and any(waits):
                # a chain the records show in shadow that learned at once (learn=3) was past
                # shadow after all (records behind, e.g. another writer): its answer is final
                waits = [w and not (len(a) > 1 and a[-1] == 1)
                         for w, a in zip(waits, answered, strict=True)]
            first = [j for j, w in enumerate(waits) if not w]
            one = len(first) == len(batches)
            if dry is not None and writes is not None:
                got = await self._speculated(
                    batches if one else [batches[j] for j in first],
                    dry if one else [dry[j] for j in first],
                    answered if one else [answered[j] for j in first], direct, also, writes,
                    now_ms)
            else:
                got = await self.store.observe_answers(
                    batches if one else [batches[j] for j in first], learn=learn,
                    now_ms=now_ms, also=also)
            answers = got if one else await self._floored_rounds(
                events, groups, batches, dict(zip(first, got, strict=True)), seen, footing,
                now_ms)
            if learn:
                await self._record_service_modes(
                    [(chain, answer.mode_runs(answer.n - 1))
                     for (chain, _), answer in zip(groups.values(), answers)],
                    seen, footing, writes,
                )
        except UnavailableError:  # the store translates every Redis failure into this
            ENGINE_ERRORS.labels(kind="redis_unavailable").inc()
            raise
        BATCH_EVENTS.observe(len(events))
        count_answers(answers)
        out: list[Verdict | None] = [None] * len(events)
        for (chain, indices), answer in zip(groups.values(), answers, strict=True):
            self._verdicts(out, events, indices, chain, answer, now, trace_id, guard_reasons)
        return [v for v in out if v is not None]

    def _groups(
        self, events: Sequence[IngestEvent], markov_nodes: Sequence[str], learn: bool
    ) -> dict[str, tuple[ChainId, list[int]]]:
        """The events of each chain (indices, in order); node labels noted while at it."""
        groups: dict[str, tuple[ChainId, list[int]]] = {}
        chains = self._chains
        note = self.labels.note if self.labels is not None and learn else None
        last_ck: tuple[str, str, str, str] | None = None
        tag, members = "", []
        for i, ev in enumerate(events):
            ck = (ev.project_id, ev.agent_id, ev.service, ev.priority)
            if ck != last_ck:  # consecutive events of one chain (the usual envelope): no lookups
                chain = chains.get(ck)
                if chain is None:
                    if len(chains) >= _CHAIN_MEMO:
                        chains.clear()
                    chain = chains[ck] = self.chain_of(ev)
                tag = chain.tag
                group = groups.get(tag)
                if group is None:
                    group = groups[tag] = (chain, [])
                members, last_ck = group[1], ck
            members.append(i)
            if note is not None:
                note(tag, markov_nodes[i], ev.service, ev.action, ev.payload)
        return groups

    def _batches(
        self,
        events: Sequence[IngestEvent],
        groups: dict[str, tuple[ChainId, list[int]]],
        markov_nodes: Sequence[str],
        digests: Sequence[str],
        holds: Sequence[bool] | None,
        guard_reasons: Sequence[tuple[Reason, ...]] | None,
        seen: dict[tuple[str, str], dict[str, tuple[int, int]]],
        per_project: Mapping[str, EngineParams],
    ) -> list[ChainBatch]:
        """One observe batch per chain: each event held back when the caller or a guardrail
        holds it, the chain's mode floor from the service-mode records ``seen``."""
        batches = []
        for tag, (chain, indices) in groups.items():
            items = []
            for i in indices:
                ev = events[i]
                hold = bool(holds[i]) if holds is not None else False
                if guard_reasons is not None and not hold:
                    hold = any(r.action in HOLDING for r in guard_reasons[i])
                items.append(ObserveItem(ev.event_id, ev.run_id, markov_nodes[i],
                                         ev.priority in _HIGH, ev.end_of_run, hold, ev.action,
                                         digests[i]))
            p = per_project.get(chain.project_id, self.params)
            batches.append(ChainBatch(
                tag=tag,
                items=items,
                eligible=chain.critical or self.rich,
                locked_action=p.critical_locked_action if chain.critical else p.locked_action,
                mode_floor=floor_of(seen.get((chain.project_id, chain.agent_id), {}),
                                    service_field(chain)),
                params=None if p is self.params else p,
            ))
        return batches

    async def _floored_rounds(
        self,
        events: Sequence[IngestEvent],
        groups: dict[str, tuple[ChainId, list[int]]],
        batches: list[ChainBatch],
        answered: dict[int, Answer],
        seen: dict[tuple[str, str], dict[str, tuple[int, int]]],
        footing: Callable[[str], int],
        now_ms: int,
    ) -> list[Answer]:
        """Observe (learning) the chains whose mode floor may change inside the batch
        (models/mode_floors.py), after ``answered`` (the others'), each event floored by the
        agent's other chains as of that event. Round by round: an event past the first
        position where another such chain of the agent may still change has its floor marked
        unsure, and the chain's call stops before the first of those its floor would decide;
        the next round goes on from there with what the answers showed. Every round observes at
        least the earliest stopped event, so this ends; past :data:`FLOOR_ROUNDS_MAX` rounds the
        rest is floored by what is known (counted). A chain that was sent dry in the first round
        trip is in shadow and wrote nothing (lua/observe.lua learn=2/3)."""
        chains = list(groups.values())
        waiting = [j for j in range(len(batches)) if j not in answered]
        done = dict.fromkeys(waiting, 0)
        parts: dict[int, list[Answer]] = {j: [] for j in waiting}
        after: dict[int, tuple[int, int]] = {}  # (mode, runs) after a chain's observed events
        agents = {(chains[j][0].project_id, chains[j][0].agent_id) for j in waiting}
        fixed: dict[tuple[str, str], list[tuple[int, str, tuple[int, int]]]] = {}
        for j, answer in answered.items():  # the first round's changes, once
            chain, indices = chains[j]
            agent = (chain.project_id, chain.agent_id)
            if agent in agents:
                fixed.setdefault(agent, []).extend(changes(
                    service_field(chain), indices, answer.all_mode_runs()))
        for r in range(1, FLOOR_ROUNDS_MAX + 1):
            todo = [j for j in waiting if done[j] < len(chains[j][1])]
            if not todo:
                break
            last = r == FLOOR_ROUNDS_MAX
            updates = {agent: list(u) for agent, u in fixed.items()}
            for j in waiting:
                if parts[j]:
                    chain, indices = chains[j]
                    updates.setdefault((chain.project_id, chain.agent_id), []).extend(changes(
                        service_field(chain), indices,
                        (mr for a in parts[j] for mr in a.all_mode_runs())))
            for agent_updates in updates.values():
                agent_updates.sort()
            sent = []
            for j in todo:
                chain, indices = chains[j]
                agent = (chain.project_id, chain.agent_id)
                records = seen.get(agent, {})
                soft = footing(chain.project_id)
                horizon: int | None = None
                for z in todo:
                    other = chains[z][0]
                    if z == j or (other.project_id, other.agent_id) != agent:
                        continue
                    known = after.get(z) or records.get(service_field(other), (0, 0))
                    at = change_position(chains[z][1], done[z], known, soft)
                    if at is not None and (horizon is None or at < horizon):
                        horizon = at
                rest = indices[done[j]:]
                floors = event_floors(chain, rest, records, updates.get(agent, []))
                each = [floors] * len(rest) if isinstance(floors, int) else list(floors)
                if horizon is not None and not last:
                    each = [f + UNSURE if i > horizon else f
                            for f, i in zip(each, rest, strict=True)]
                floor: int | tuple[int, ...] = (
                    each[0] if all(f == each[0] for f in each) and each[0] < UNSURE
                    else tuple(each))
                sent.append(replace(batches[j], items=batches[j].items[done[j]:],
                                    mode_floor=floor))
            got = await self.store.observe_answers(sent, learn=True, now_ms=now_ms)
            for j, answer in zip(todo, got, strict=True):
                parts[j].append(answer)
                done[j] += answer.n
                if answer.n:
                    after[j] = answer.mode_runs(answer.n - 1)
            if not any(answer.n for answer in got):  # the earliest stopped event is always sure
                raise RuntimeError("mode floors: a round of observe calls answered no event")
            child(FLOOR_ROUNDS, "capped" if last else "round").inc()
        for j in waiting:
            answered[j] = Answer.join(parts[j])
        return [answered[j] for j in range(len(batches))]

    async def _speculated(
        self,
        batches: Sequence[ChainBatch],
        dry: Sequence[tuple[list[str], list[Any]]],
        first: Sequence[Any],
        direct: bool,
        also: Sequence[tuple[AsyncScript, list[str], list[Any]]],
        writes: Deferred,
        now_ms: int,
    ) -> list[Answer]:
        """The answers of a small batch observed in the first round trip, beside the guardrail
        state: ``first`` answers the calls ``dry`` (learn=2, or learn=3 when ``direct``).

        learn=3 (no guardrail of the policy can hold an event back): a chain past shadow has
        learned already (the answer's last value is 1) and its answer is final — its mode floor,
        which the service-mode records read in the same round trip confirm only afterwards,
        matters only in shadow. Otherwise a chain was observed dry: it assumed that no
        guardrail holds an event back and that the mode floor is the one the records this
        engine saw last give. A dry answer stands when the guardrail state and the records
        confirm both (the observe call is compared with the one the step-by-step path would
        send) and no checkpoint fell in the batch (a dry call cannot run one: it answers
        ``'!'``); its learning call then goes to ``writes`` (sent with the verdict save),
        expected to answer exactly what the dry call answered. A dry call wrote nothing, so a
        chain whose answer does not stand is observed step by step now, as if it had not been
        sent. Between the two round trips only another writer of the same chain (two workers on
        one partition during a rebalance, a human decision on the chain) can make a learning
        call answer differently; the caller sees that in :meth:`Deferred.confirmed` and decides
        again (a redelivery: the stored answers)."""
        answers: list[Answer | None] = [None] * len(batches)
        stands: list[tuple[list[str], list[Any], Any]] = []
        redo: list[int] = []
        learned = 0
        for i, (batch, (keys, args), answer) in enumerate(zip(batches, dry, first, strict=True)):
            if direct and len(answer) > 1:
                done, answer = answer[-1], answer[:-1]
                if done == 1:
                    answers[i] = Answer(answer)
                    learned += 1
                    continue
            if len(answer) == 1 or self.store.observe_call(batch, learn=True, now_ms=now_ms) != (
                    keys, args):
                redo.append(i)
            else:
                answers[i] = Answer(answer)
                stands.append((keys, args, answer))
        observe = self.store.scripts["observe"]
        for keys, args, answer in stands:
            writes.add(ScriptCall(observe, keys, args), expect=answer)
        if redo:
            again = await self.store.observe_answers(
                [batches[i] for i in redo], learn=True, now_ms=now_ms, also=also)
            for i, answer in zip(redo, again, strict=True):
                answers[i] = answer
            child(SPECULATED, "declined").inc()
        else:
            for script, keys, args in also:
                writes.add(ScriptCall(script, keys, args))
            child(SPECULATED, "direct" if learned == len(batches) else "sent").inc()
        done = [a for a in answers if a is not None]
        if len(done) != len(batches):  # every chain answered exactly once, in order
            raise RuntimeError(f"{len(done)} observe answers for {len(batches)} chains")
        return done

    def _remember(self, seen: dict[tuple[str, str], dict[str, tuple[int, int]]]) -> None:
        """Keep the service-mode records just read: the next batch predicts mode floors by them."""
        if len(self._modes) >= _CHAIN_MEMO:
            self._modes.clear()
        self._modes.update(seen)

    def _verdicts(
        self,
        out: list[Verdict | None],
        events: Sequence[IngestEvent],
        indices: Sequence[int],
        chain: ChainId,
        answer: Answer,
        now: float,
        trace_id: str,
        guard_reasons: Sequence[tuple[Reason, ...]] | None,
    ) -> None:
        """The verdicts of one chain's events, read off the reply in place (a full
        :class:`Observation` only for an anomalous event's explanation)."""
        if len(indices) != answer.n:
            raise ValueError(f"observe answered {answer.n} events for {len(indices)}")
        flat, recs = answer.flat, answer.recs
        label, tag = chain.label, chain.tag
        nodes: dict[bytes, str] = {}
        for k, i in enumerate(indices):
            ev = events[i]
            score, threshold, count, row, flags, _, _, _ = recs[k]
            mode = (flags >> 5) & 3
            obs_action = ACTION_CODES[(flags >> 7) & 3]
            guards = guard_reasons[i] if guard_reasons is not None else ()
            if flags & 1:
                reason = markov_reason(answer.observation(k), self.params)
                reasons = (reason, *guards) if reason is not None else guards
            else:
                reasons = guards
            action = strictest([obs_action, *(r.action for r in guards)]) if guards else obs_action
            change = ""
            mode_change = (flags >> 9) & 3
            if mode_change:
                change = MODE_NAMES[mode] + ("(forced)" if mode_change == 2 else "")
            raw_from, raw_to = flat[1 + WIDTH * k], flat[2 + WIDTH * k]
            from_node = nodes.get(raw_from)
            if from_node is None:
                from_node = nodes[raw_from] = _text(raw_from)
            to_node = nodes.get(raw_to)
            if to_node is None:
                to_node = nodes[raw_to] = _text(raw_to)
            # positional, slot by slot (models/verdict_build.py): the same Verdict, ≈ 3x cheaper
            out[i] = make_verdict(
                ev.event_id, ev.agent_id, ev.run_id, label, MODE_NAMES[mode], bool(flags & 1),
                score, threshold,
                make_edge(from_node, to_node, probability(count, row), count / COUNT_SCALE,
                          row / COUNT_SCALE),
                action, reasons, now, trace_id, ev.project_id, tag, change,
                bool(flags & DUPLICATE),
                bool(flags & 2),
            )

    # --- services new to an established agent ---------------------------------------------------
    # A chain starts in shadow. When the agent already has a chain past shadow on another
    # service, a first call to a new service is exactly what exfiltration looks like, so the new
    # chain acts by the agent's mode (flag or pause, and pausing holds the event back from
    # learning) for as long as that chain is in shadow: it leaves shadow by its own footing and
    # stability (runs alone never lift the floor).
    # Per agent, one record {chain label suffix -> "mode:runs"} (EngineStore.service_modes),
    # read and written once per batch.

    async def _service_modes(
        self, chains: Sequence[ChainId]
    ) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
        return await self.store.service_modes(
            sorted({(c.project_id, c.agent_id) for c in chains})
        )

    async def _record_service_modes(
        self,
        latest: Sequence[tuple[ChainId, tuple[int, int]]],
        seen: dict[tuple[str, str], dict[str, tuple[int, int]]],
        footing: Callable[[str], int],
        writes: Deferred | None = None,
    ) -> None:
        records = []
        for chain, (mode, runs) in latest:
            agent = (chain.project_id, chain.agent_id)
            field = service_field(chain)
            if _record_changes(seen.get(agent, {}).get(field), mode, runs,
                               footing(chain.project_id)):
                records.append((agent, field, mode, runs))
        for agent, field, mode, runs in records:
            known = self._modes.get(agent)
            if known is not None:  # what the next batch predicts by (a copy: seen is shared)
                self._modes[agent] = {**known, field: (mode, runs)}
        if writes is not None:
            for op in self.store.service_mode_writes(records):
                writes.add(op)
        else:
            await self.store.record_service_modes(records)

    async def feedback(
        self, chain_tag: str, run_id: str, event_id: str, decision: str, *,
        project_id: str = "", agent_id: str = "",
    ) -> FeedbackResult:
        """Apply a human decision on a held event (approve → learn it; reject → confirm).

        With the event's ``project_id`` and ``agent_id``, the learning guardrails (step order,
        values) that held it themselves learn what they reported, too (approve) — first, so a
        retry after a failure here finds the chain's part still to do. Both parts apply once."""
        try:
            if self.guardrails is not None and project_id and agent_id:
                await self.guardrails.feedback(project_id, agent_id, run_id, event_id, decision)
            return await self.store.feedback(
                chain_tag, run_id, event_id, decision, now_ms=int(self.clock() * 1000)
            )
        except UnavailableError:
            ENGINE_ERRORS.labels(kind="redis_unavailable").inc()
            raise

    async def reset(
        self, chain: ChainId, *, audit: AuditLog | None = None, actor: str = "cli"
    ) -> int:
        """Operator reset of a baseline: the chain starts again in shadow.

        With ``audit``, a ``baseline.reset`` entry is appended to the chain's project log.
        """
        if audit is not None:
            check_action_actor("baseline.reset", actor)
        deleted = await self.store.reset(chain.tag)
        if self.labels is not None:
            self.labels.forget(chain.tag)
        if audit is not None:
            await audit.append(
                chain.project_id, "baseline.reset", actor, f"chain:{chain.label}",
                {"agent_id": chain.agent_id, "service": chain.service,
                 "critical": chain.critical, "keys_deleted": deleted},
            )
        return deleted


def _record_changes(
    known: tuple[int, int] | None, mode: int, runs: int, footing_runs: int
) -> bool:
    """Whether a chain's service-mode record must be written after a batch.

    Runs only matter until the chain has its footing (``footing_runs``): write on a mode change
    or while the *recorded* runs are below it — also when the chain passed its footing inside
    this one batch (recorded 25, now 35), which a test on the new runs alone would miss.

    >>> _record_changes((0, 25), 0, 35, 30), _record_changes((0, 31), 0, 35, 30)
    (True, False)
    >>> _record_changes(None, 0, 35, 30), _record_changes((1, 40), 0, 35, 30)
    (True, True)
    """
    if known == (mode, runs):
        return False
    return known is None or known[0] != mode or known[1] < footing_runs


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v

