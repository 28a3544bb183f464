"""The behavioural engine: events → nodes and chains → one Lua call per chain batch → verdicts.

Pure work (skeletons, node ids, chain identity, reasons) comes from ``models/``; state and the
decision live in Redis (``lua/observe.lua``). Used by the Faust workers, ``ratchet replay`` and
the benchmarks alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from models.audit import check_action_actor
from models.events import IngestEvent
from models.modes import MODE_NAMES
from models.nodes import ChainId, chain_for, node_id
from models.params import COUNT_SCALE, EngineParams
from models.scoring import probability
from models.skeleton import skeleton_hash
from models.verdict import Edge, Reason, Verdict
from ratchet.audit import AuditLog
from ratchet.errors import UnavailableError
from ratchet.keys import Keys
from ratchet.metrics import BATCH_EVENTS, EDGE_SCORE_BITS, ENGINE_ERRORS, EVENTS, MODE_TRANSITIONS
from ratchet.store import ChainBatch, EngineStore, FeedbackResult, Observation, ObserveItem

__all__ = ["Engine", "markov_reason", "connect_redis"]

_HIGH = frozenset(("high", "critical"))


def connect_redis(url: str, *, cluster: bool = False) -> Redis | RedisCluster:
    """An asyncio Redis (or Redis Cluster) client with bounded timeouts."""
    if cluster:
        return RedisCluster.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)


def markov_reason(obs: Observation, params: EngineParams) -> Reason | None:
    """The explanation of an anomalous transition (None when the detector saw nothing)."""
    if not obs.anomalous:
        return None
    detail: dict[str, object] = {
        "score_bits": round(obs.score, 3),
        "threshold_bits": round(obs.threshold, 3),
        "p": probability(obs.count, obs.row_total),
        "from": obs.from_node,
        "to": obs.to_node,
        "seen": obs.count / COUNT_SCALE,
        "from_seen": obs.row_total / COUNT_SCALE,
        "new_node": obs.to_new,
        "mode": MODE_NAMES[obs.mode],
    }
    if obs.mode == 0:
        detail["note"] = "shadow mode: learning, reported but not enforced"
    return Reason("markov", obs.action, detail)


@dataclass
class Engine:
    store: EngineStore
    params: EngineParams
    rich: bool = False
    clock: Callable[[], float] = time.time

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
    ) -> Engine:
        params = params or EngineParams()
        store = EngineStore(
            client, keys or Keys(), params, run_ttl_s=run_ttl_s, chain_ttl_s=chain_ttl_s
        )
        return cls(store=store, params=params, rich=rich)

    def chain_of(self, event: IngestEvent) -> ChainId:
        return chain_for(event.project_id, event.agent_id, event.service, event.priority)

    def node_of(self, event: IngestEvent) -> str:
        return node_id(
            skeleton_hash(event.payload), service=event.service, action=event.action, rich=self.rich
        )

    async def decide(
        self,
        events: Sequence[IngestEvent],
        *,
        learn: bool = True,
        trace_id: str = "",
        holds: Sequence[bool] | None = None,
    ) -> list[Verdict]:
        """Verdicts for ``events`` in order (one Lua call per chain, pipelined).

        ``holds[i]`` marks an event a guardrail paused or rejected: it is not learned.
        Raises :class:`UnavailableError` when Redis cannot be reached (never a detection).
        """
        if not events:
            return []
        groups: dict[str, tuple[ChainId, list[int], list[ObserveItem]]] = {}
        for i, ev in enumerate(events):
            chain = self.chain_of(ev)
            group = groups.get(chain.tag)
            if group is None:
                group = groups[chain.tag] = (chain, [], [])
            group[1].append(i)
            group[2].append(
                ObserveItem(
                    event_id=ev.event_id,
                    run_id=ev.run_id,
                    node=self.node_of(ev),
                    high_priority=ev.priority in _HIGH,
                    end_of_run=ev.end_of_run,
                    hold=bool(holds[i]) if holds is not None else False,
                )
            )
        batches = [
            ChainBatch(
                tag=tag,
                items=items,
                eligible=chain.critical or self.rich,
                locked_action=(
                    self.params.critical_locked_action if chain.critical
                    else self.params.locked_action
                ),
            )
            for tag, (chain, _, items) in groups.items()
        ]
        now = self.clock()
        try:
            answers = await self.store.observe(batches, learn=learn, now_ms=int(now * 1000))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            ENGINE_ERRORS.labels(kind="redis_unavailable").inc()
            raise UnavailableError(f"Redis is unavailable: {exc}") from exc
        BATCH_EVENTS.observe(len(events))
        out: list[Verdict | None] = [None] * len(events)
        for (chain, indices, _), answer in zip(groups.values(), answers, strict=True):
            for i, obs in zip(indices, answer, strict=True):
                out[i] = self._verdict(events[i], chain, obs, now, trace_id)
        return [v for v in out if v is not None]

    def _verdict(
        self, ev: IngestEvent, chain: ChainId, obs: Observation, now: float, trace_id: str
    ) -> Verdict:
        reason = markov_reason(obs, self.params)
        if not obs.duplicate:
            mode = MODE_NAMES[obs.mode]
            EVENTS.labels(mode=mode, anomalous="true" if obs.anomalous else "false").inc()
            EDGE_SCORE_BITS.observe(obs.score)
            if obs.mode_change:
                MODE_TRANSITIONS.labels(
                    to=mode, forced="true" if obs.mode_change == 2 else "false"
                ).inc()
        change = ""
        if obs.mode_change:
            change = MODE_NAMES[obs.mode] + ("(forced)" if obs.mode_change == 2 else "")
        return Verdict(
            event_id=ev.event_id,
            agent_id=ev.agent_id,
            run_id=ev.run_id,
            chain=chain.label,
            chain_tag=chain.tag,
            mode=MODE_NAMES[obs.mode],
            anomalous=obs.anomalous,
            score=obs.score,
            threshold=obs.threshold,
            edge=Edge(
                obs.from_node,
                obs.to_node,
                probability(obs.count, obs.row_total),
                obs.count / COUNT_SCALE,
                obs.row_total / COUNT_SCALE,
            ),
            action=obs.action,
            reasons=(reason,) if reason is not None else (),
            decided_at=now,
            trace_id=trace_id,
            project_id=ev.project_id,
            duplicate=obs.duplicate,
            held=obs.held,
            mode_change=change,
        )

    async def feedback(
        self, chain_tag: str, run_id: str, event_id: str, decision: str
    ) -> FeedbackResult:
        """Apply a human decision on a held event (approve → learn it; reject → confirm)."""
        try:
            return await self.store.feedback(
                chain_tag, run_id, event_id, decision, now_ms=int(self.clock() * 1000)
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            ENGINE_ERRORS.labels(kind="redis_unavailable").inc()
            raise UnavailableError(f"Redis is unavailable: {exc}") from exc

    async def reset(
        self, chain: ChainId, *, audit: AuditLog | None = None, actor: str = "cli"
    ) -> int:
        """Operator reset of a baseline: the chain starts again in shadow.

        With ``audit``, a ``baseline.reset`` entry is appended to the chain's project log.
        """
        if audit is not None:
            check_action_actor("baseline.reset", actor)
        deleted = await self.store.reset(chain.tag)
        if audit is not None:
            await audit.append(
                chain.project_id, "baseline.reset", actor, f"chain:{chain.label}",
                {"agent_id": chain.agent_id, "service": chain.service,
                 "critical": chain.critical, "keys_deleted": deleted},
            )
        return deleted
