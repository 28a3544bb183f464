"""Redis adapter of the behavioural engine: builds KEYS/ARGV, calls the Lua scripts, parses.

One script call per chain per batch; the calls of a batch that spans several chains go out in one
pipeline (single Redis) or concurrently (Redis Cluster, where each chain may live on another node).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.errors import ScriptCode, raise_for_code
from models.params import ACTION_CODES, EngineParams
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisStore
from ratchet.store.scripts import run_many, scripts_for
from ratchet.telemetry.metrics import LUA_SECONDS

__all__ = [
    "ChainBatch",
    "EngineStore",
    "FeedbackResult",
    "Observation",
    "ObserveItem",
    "parse_observations",
]


@dataclass(frozen=True, slots=True)
class ObserveItem:
    """One event as the observe script needs it."""

    event_id: str
    run_id: str
    node: str
    high_priority: bool = False
    end_of_run: bool = False
    #: A guardrail holds this event back from learning (it paused or rejected it).
    hold: bool = False


@dataclass(frozen=True, slots=True)
class ChainBatch:
    """Events of one chain, in order, plus what the chain's identity implies."""

    tag: str
    items: Sequence[ObserveItem]
    #: Critical chains and rich-mode chains may reach locked whatever their traffic.
    eligible: bool = False
    locked_action: str = "pause"
    #: Mode to act by while the chain itself is in shadow (0 = none): the agent is established
    #: on other services and this service is new to it (see Engine.decide).
    mode_floor: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    """What the observe script answered for one event (counts in 1/COUNT_SCALE units)."""

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
    #: 0 none, 1 promoted at this event, 2 force-promoted at this event.
    mode_change: int
    to_new: bool


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    applied: bool
    sigma: float | None
    fallback: float | None
    learned: int


def parse_observation(raw: bytes | str) -> Observation:
    text = raw.decode() if isinstance(raw, bytes) else raw
    f = text.split("\t")
    return Observation(
        duplicate=f[0] == "1",
        from_node=f[1],
        to_node=f[2],
        count=int(f[3]),
        row_total=int(f[4]),
        score=float(f[5]),
        threshold=float(f[6]),
        anomalous=f[7] == "1",
        mode=int(f[8]),
        action=ACTION_CODES[int(f[9])],
        held=f[10] == "1",
        runs=int(f[11]),
        mode_change=int(f[12]),
        to_new=f[13] == "1",
    )


def parse_observations(raw: bytes | str) -> list[Observation]:
    """The observe script's answer (one line per event) → observations in order."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return [parse_observation(line) for line in text.split("\n")] if text else []


class EngineStore(RedisStore):
    def __init__(
        self,
        client: Redis | RedisCluster,
        keys: Keys,
        params: EngineParams,
        *,
        run_ttl_s: int = 86_400,
        chain_ttl_s: int = 30 * 86_400,
    ) -> None:
        self.client = client
        self.keys = keys
        self.params = params
        self.run_ttl_s = run_ttl_s
        self.chain_ttl_s = chain_ttl_s
        self.scripts = scripts_for(client)
        self._static = self._static_args(params)

    def _static_args(self, p: EngineParams) -> list[Any]:
        low, mid, high = p.decay_ppm()
        return [
            repr(p.epsilon), repr(p.floor_bits), repr(p.fallback_bits), repr(p.sigma_multiplier),
            p.window, p.window_large, p.large_runs, p.min_support, p.checkpoint_runs,
            p.min_runs_soft, p.min_runs_locked, repr(p.stability), repr(p.stability_large),
            p.force_after_runs, repr(p.forced_sigma), p.node_cap, p.edge_cap,
            ACTION_CODES.index(p.soft_action),
        ]

    def observe_call(self, batch: ChainBatch, *, learn: bool, now_ms: int) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one observe call (exposed for tests and benchmarks)."""
        keys = self.keys.chain_keys(batch.tag).as_list()
        run_index: dict[str, int] = {}
        for item in batch.items:
            if item.run_id not in run_index:
                keys.append(self.keys.run(batch.tag, item.run_id))
                run_index[item.run_id] = len(keys)
        low, mid, high = self.params.decay_ppm()
        args: list[Any] = [
            now_ms, 1 if learn else 0, *self._static,
            ACTION_CODES.index(batch.locked_action), 1 if batch.eligible else 0,
            low, mid, high, self.run_ttl_s, self.chain_ttl_s, 1 if self.params.protect else 0,
            1 if self.params.window_stat == "robust" else 0, batch.mode_floor, len(batch.items),
        ]
        for item in batch.items:
            args.append(item.event_id)
            args.append(
                f"{run_index[item.run_id]} {1 if item.high_priority else 0}"
                f"{1 if item.end_of_run else 0}{1 if item.hold else 0} {item.node}"
            )
        return keys, args

    async def observe(
        self, batches: Sequence[ChainBatch], *, learn: bool = True, now_ms: int | None = None
    ) -> list[list[Observation]]:
        """Run the observe script once per chain batch; answers in the order given."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        calls = [self.observe_call(b, learn=learn, now_ms=now) for b in batches]
        started = time.perf_counter()
        raw = await run_many(self.client, self.scripts["observe"], calls)
        LUA_SECONDS.labels(script="observe").observe(time.perf_counter() - started)
        return [parse_observations(answer) for answer in raw]

    async def feedback(
        self, tag: str, run_id: str, event_id: str, decision: str, *, now_ms: int | None = None
    ) -> FeedbackResult:
        p = self.params
        ck = self.keys.chain_keys(tag)
        keys = [ck.meta, ck.edges, ck.rows, ck.nodes, self.keys.run(tag, run_id)]
        now = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str | int] = [
            event_id, decision, now, p.node_cap, p.edge_cap,
            repr(p.sigma_multiplier), repr(p.fallback_bits), repr(p.sigma_min), repr(p.sigma_max),
            repr(p.sigma_step_up), repr(p.sigma_step_down), repr(p.fallback_min),
            repr(p.fallback_max), repr(p.fallback_step_up), repr(p.fallback_step_down),
            self.chain_ttl_s,
        ]
        started = time.perf_counter()
        code, sigma, fallback, learned = await self.scripts["feedback"](keys=keys, args=args)
        LUA_SECONDS.labels(script="feedback").observe(time.perf_counter() - started)
        if int(code) == ScriptCode.NOT_PENDING:
            return FeedbackResult(False, None, None, 0)
        raise_for_code(int(code), "feedback")
        return FeedbackResult(True, float(sigma), float(fallback), int(learned))

    async def reset(self, tag: str) -> int:
        return int(await self.scripts["reset"](keys=self.keys.chain_keys(tag).as_list(), args=[]))

    async def chain_meta(self, tag: str) -> dict[str, str]:
        raw = await self.client.hgetall(self.keys.chain_keys(tag).meta)
        return {_s(k): _s(v) for k, v in raw.items()}

    async def edge_counts(self, tag: str) -> dict[str, int]:
        """All transition counts of a chain (``from\\tto`` → count in 1/COUNT_SCALE units)."""
        raw = await self.client.hgetall(self.keys.chain_keys(tag).edges)
        return {_s(k): int(v) for k, v in raw.items()}

    async def row_counts(self, tag: str) -> dict[str, int]:
        raw = await self.client.hgetall(self.keys.chain_keys(tag).rows)
        return {_s(k): int(v) for k, v in raw.items()}


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
