"""The guardrails side of a decision: policy per project → state per agent → reasons per event.

For a batch of events: the projects' policies come from a :class:`PolicySource` (cached); the
events are grouped by agent and counted into Redis by one ``lua/guardrails.lua`` call per agent
(pipelined), which answers each event's state; then every enabled rule of the event's policy
runs on the event and its state — the same reasons as :func:`models.guardrails.evaluate` per
event, with the payload scans of the batch done together (:mod:`models.guardrails.batch`).

Why the split: the only thing that must be atomic is the read-modify-write of the counters, so
Lua does exactly that and the rules (regexes, Luhn, base64 sniffing, cycle detection) stay in
pure, unit-tested Python. The state each event is judged on is the one the atomic update
produced for it, so two workers racing on one agent (a rebalance) still see exact counts.

The node a guardrail sees is always the *rich* node (service, coarse action, payload shape):
loop and entropy look at a run, and a run crosses services, so ``crm.read {id}`` and
``mail.send {id}`` must not be the same node even when the Markov chain keys on shape alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from models.events import IngestEvent
from models.guardrails import EMPTY_STATE, GuardrailState
from models.guardrails.batch import CHUNK_EVENTS, Planned, finish, plan
from models.guardrails.budget import (
    SCAN_STEPS_PER_BATCH,
    SCAN_STEPS_PER_EVENT,
    ScanBudget,
    ScanShare,
)
from models.guardrails.evaluate import learning_holds
from models.guardrails.order import step_text
from models.guardrails.values import ValueConfig, observations
from models.verdict import Reason
from ratchet.store.guardrails import GuardBatch, GuardItem, GuardStore, make_guard_item
from ratchet.store.keys import Keys
from ratchet.store.policies import ActivePolicy, PolicySource
from ratchet.store.round import Round
from ratchet.telemetry.children import child
from ratchet.telemetry.metrics import GUARDRAIL_REASONS, GUARDRAIL_SHARE_SPENT

__all__ = ["Guardrails"]

#: Longest stretch of rule evaluation between two yields to the event loop, seconds.
_SLICE_S = 0.02
#: Planned scan work (budget steps, ~14 ns each at RE2's worst) after which a chunk of events is
#: scanned before planning more, so a yield is never far away.
_CHUNK_STEPS = 1_000_000


def _stateful(active: ActivePolicy) -> bool:
    s = active.spec
    return bool(
        s.agent_window_s or s.run_window_s or s.history or s.run_events or s.run_cost
        or s.agent_daily_cost or s.order or s.values
    )


@dataclass
class Guardrails:
    store: GuardStore
    policies: PolicySource
    keys: Keys
    #: Use each event's own ``ts`` (when it has one) as its time: replay of recorded traffic.
    #: Live workers use the decision time (an agent could lie about ``ts``).
    event_time: bool = False
    #: Pattern-scan budgets (steps, see :class:`ScanBudget`): per event, and per project per
    #: batch — so one tenant's events cannot hold a worker that serves every tenant.
    scan_steps_per_event: int = SCAN_STEPS_PER_EVENT
    scan_steps_per_batch: int = SCAN_STEPS_PER_BATCH
    #: Scanning time per project over time (measured): one tenant's slow rules or costly text
    #: cannot hold the worker however its events fit the step budgets.
    share: ScanShare = field(default_factory=ScanShare)

    async def feedback(self, project_id: str, agent_id: str, run_id: str, event_id: str,
                       decision: str) -> int:
        """A person's decision on an event: what the learning rules that held it reported is
        learned (approve) or dropped (reject) — :meth:`GuardStore.feedback`. Lessons applied."""
        policies = await self.policies.active({project_id})
        values = policies[project_id].spec.values if project_id in policies else None
        cfg = values or ValueConfig()
        return await self.store.feedback(
            self.keys.guard_tag(project_id, agent_id), run_id, event_id, decision,
            max_distinct=cfg.max_distinct, margin=cfg.margin, margin_below=cfg.margin_below)

    async def check(
        self, events: Sequence[IngestEvent], nodes: Sequence[str], now: float,
        *, beside: Round | None = None,
        policies: Mapping[str, ActivePolicy] | None = None,
    ) -> list[tuple[Reason, ...]]:
        """Guardrail reasons per event (same order). Counts the events into Redis.

        ``beside``: other reads to send in the same round trip as the guardrail state (run
        here, answers left in the round), so a batch pays one round trip for both.
        ``policies``: the events' projects' policies as the caller already read them (so the
        reasons come from the very policy the caller decided by), else read here."""
        if policies is None:
            policies = await self.policies.active({ev.project_id for ev in events})
        now_ms = int(now * 1000)
        groups: dict[str, tuple[ActivePolicy, list[int], list[GuardItem]]] = {}
        last: tuple[str, str] | None = None
        group: tuple[ActivePolicy, list[int], list[GuardItem]] | None = None
        stateful = {p: _stateful(a) for p, a in policies.items()}
        holds: dict[tuple[str, str, str], int] = {}  # (project, service, priority) → bits
        for i, ev in enumerate(events):
            if not stateful[ev.project_id]:
                continue
            if group is None or last != (ev.project_id, ev.agent_id):
                # a new agent (consecutive events of one agent share its tag and group)
                last = (ev.project_id, ev.agent_id)
                tag = self.keys.guard_tag(ev.project_id, ev.agent_id)
                group = groups.get(tag)
                if group is None:
                    group = groups[tag] = (policies[ev.project_id], [], [])
            t_ms = int(ev.ts * 1000) if self.event_time and ev.ts is not None else now_ms
            group[1].append(i)
            spec = group[0].spec
            values = spec.values
            holding = 0
            if spec.order is not None or values is not None:
                key = (ev.project_id, ev.service, ev.priority)
                holding = holds.get(key, -1)
                if holding < 0:
                    holding = holds[key] = learning_holds(group[0].policy, ev.service,
                                                          ev.priority)
            group[2].append(make_guard_item(
                ev.event_id, ev.run_id, t_ms, nodes[i], ev.cost, step_text(ev.service, ev.action),
                () if values is None else observations(ev.service, ev.action, ev.payload, values),
                holding))
        states: list[tuple[GuardrailState, bool]] = [(EMPTY_STATE, True)] * len(events)
        if groups:
            batches = [GuardBatch(tag, items, a.spec) for tag, (a, _, items) in groups.items()]
            answers = await self.store.update(batches, beside=beside)
            for (_, indices, _), answer in zip(groups.values(), answers, strict=True):
                for i, ans in zip(indices, answer, strict=True):
                    states[i] = (ans.state, not ans.duplicate)
        elif beside is not None:
            await self.store.run(beside)
        # The rules run in pure Python between awaits: bound the payload scans per event and per
        # project, and let the event loop breathe (signals, other coroutines) every ~20 ms. Each
        # event is planned in order (budgets charged as the per-event scans would), then the
        # planned scans of a chunk run together (models.guardrails.batch).
        # While projects share the worker, a project's batch gets the steps its scanning share
        # has left (none once it is spent).
        started = time.monotonic()
        contended = self.share.contended(policies, started)
        project_budget = {}
        for p in policies:
            steps = (self.share.steps(p, started, self.scan_steps_per_batch) if contended
                     else self.scan_steps_per_batch)
            project_budget[p] = ScanBudget(steps)
            if steps == 0:
                GUARDRAIL_SHARE_SPENT.inc()
        took = dict.fromkeys(policies, 0.0)  # seconds each project's events took here
        policy_of = {p: a.policy for p, a in policies.items()}
        out: list[tuple[Reason, ...]] = []
        chunk: list[Planned] = []
        owners: list[str] = []
        chunk_steps = 0
        breathe = time.perf_counter() + _SLICE_S
        budget = ScanBudget(0)  # each event's, reset per event (plan keeps no reference to it)
        for ev, (state, _count) in zip(events, states, strict=True):
            t0 = time.perf_counter()
            shared = project_budget[ev.project_id]
            budget.steps, budget.used = min(self.scan_steps_per_event, shared.steps), 0
            planned = plan(policy_of[ev.project_id], ev, state, budget)
            shared.steps -= budget.used
            chunk.append(planned)
            owners.append(ev.project_id)
            chunk_steps += planned.steps
            t1 = time.perf_counter()
            took[ev.project_id] += t1 - t0
            full = len(chunk) >= CHUNK_EVENTS or chunk_steps >= _CHUNK_STEPS
            if full or t1 > breathe:
                done = len(out)
                out += self._finish(chunk, owners, states[done:done + len(chunk)], took)
                chunk, owners, chunk_steps = [], [], 0
                if time.perf_counter() > breathe:
                    await asyncio.sleep(0)
                    breathe = time.perf_counter() + _SLICE_S
        if chunk:
            done = len(out)
            out += self._finish(chunk, owners, states[done:done + len(chunk)], took)
        now = time.monotonic()
        for p, seconds in took.items():
            self.share.charge(p, seconds, now, contended=contended)
        return out

    @staticmethod
    def _finish(
        chunk: Sequence[Planned], owners: Sequence[str],
        states: Sequence[tuple[GuardrailState, bool]], took: dict[str, float],
    ) -> list[tuple[Reason, ...]]:
        """Scan a chunk of planned events; count the reasons of events not seen before. The
        time the scan took goes to the events' projects in proportion to the steps each planned
        (by event count when none did)."""
        t0 = time.perf_counter()
        found = finish(chunk)
        seconds = time.perf_counter() - t0
        total = sum(p.steps for p in chunk)
        for planned, project in zip(chunk, owners, strict=True):
            took[project] += seconds * (planned.steps / total if total else 1 / len(chunk))
        out: list[tuple[Reason, ...]] = []
        for reasons, (_, count) in zip(found, states, strict=False):
            out.append(tuple(reasons))
            if count:
                for r in reasons:
                    name = r.source.partition(":")[2]
                    child(GUARDRAIL_REASONS, name, r.action).inc()
        return out
