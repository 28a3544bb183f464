"""Redis adapter of the behavioural engine: builds KEYS/ARGV, calls the Lua scripts, parses.

One script call per chain per batch; the calls of a batch that spans several chains go out in one
pipeline (single Redis) or concurrently (Redis Cluster, where each chain may live on another node).
It also keeps the per-agent service-mode record (each service's mode and footing runs), so the
engine never touches Redis directly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from models.errors import ScriptCode, raise_for_code
from models.escape import ESCAPE_RULES
from models.observation import Answer, Observation
from models.params import ACTION_CODES, UNLEARNABLE_RULES, EngineParams
from ratchet.store.keys import Keys, event_field
from ratchet.store.redis import RedisStore
from ratchet.store.round import Command, Op, Round
from ratchet.store.scripts import run_many, scripts_for
from ratchet.telemetry.children import child
from ratchet.telemetry.metrics import CHECKPOINT_STOPS, LUA_SECONDS

__all__ = [
    "CHECKPOINT_WORK_PER_CALL",
    "UNSURE",
    "ChainBatch",
    "EngineStore",
    "FeedbackResult",
    "ObserveItem",
]


class ObserveItem(NamedTuple):
    """One event as the observe script needs it (a named tuple: built once per event, cheaply)."""

    event_id: str
    run_id: str
    node: str
    high_priority: bool = False
    end_of_run: bool = False
    #: A guardrail holds this event back from learning (it paused or rejected it).
    hold: bool = False
    #: The event's action: the back-off model scores rare shapes by action-to-action moves.
    action: str = ""
    #: The payload's key-path hashes (``models.escape.path_digest``), for ``shape_escape``
    #: "combos"/"paths": a new shape of a known action made of key paths it already used is
    #: likely. Empty: unknown (every path counts as new).
    paths: str = ""


#: Added to a per-item mode floor not known for sure yet (lua/observe.lua ARGV[30]).
UNSURE = 3

#: Checkpoint work one observe call may do (lua/observe.lua ARGV[42]: the sum of the chain's
#: edges and back-off fields at each checkpoint it runs). A checkpoint reads and rewrites its
#: chain: ≈ 2 ms for a chain near its caps (≈ 1,000 edges and as many back-off fields), so a
#: batch of 1,000 one-event runs of such a chain held Redis for ≈ 250 ms (checkpoints every 10
#: runs) in one call, every other client waiting. Past this budget the call stops and the store
#: sends the rest in further calls: the same answers; measured on that flood, the longest call
#: 318 → 26 ms (p90 15 ms), Redis's total time for it +50 % (each call reads the chain's hashes
#: again). Ordinary chains (tens of edges) never reach it.
CHECKPOINT_WORK_PER_CALL = 10_000


@dataclass(frozen=True, slots=True)
class ChainBatch:
    """Events of one chain, in order, plus what the chain's identity implies."""

    tag: str
    items: Sequence[ObserveItem]
    #: Critical chains and rich-mode chains may be force-promoted to locked even when their
    #: distribution never settles (any stable chain may lock, see models.modes.next_mode).
    eligible: bool = False
    locked_action: str = "pause"
    #: Mode to act by while the chain itself is in shadow, and to leave shadow at (0 = none):
    #: the agent is established on other services and this service is new to it (see
    #: Engine.decide). One for the whole batch, or one per item (the agent's other services
    #: changed mode inside the batch); an item's floor plus UNSURE: not known for sure yet (the
    #: observe call stops before the first such item the floor would decide).
    mode_floor: int | tuple[int, ...] = 0

    def floor_at(self, k: int) -> int:
        """The mode floor of item ``k`` (whether or not it is known for sure)."""
        return (self.mode_floor if isinstance(self.mode_floor, int)
                else self.mode_floor[k] % UNSURE)

    def unsure_at(self, k: int) -> bool:
        """Item ``k``'s mode floor is not known for sure (the engine's floor rounds go on
        from there; a call stopped anywhere else stopped for its checkpoint budget)."""
        return not isinstance(self.mode_floor, int) and self.mode_floor[k] >= UNSURE

    def rest(self, k: int, limit: int) -> ChainBatch:
        """At most ``limit`` items of the batch from item ``k`` on."""
        floor = (self.mode_floor if isinstance(self.mode_floor, int)
                 else self.mode_floor[k:k + limit])
        return dataclasses.replace(self, items=self.items[k:k + limit], mode_floor=floor)

    def floor_arg(self) -> str:
        """ARGV[30] of lua/observe.lua: one digit, or one per item."""
        floor = self.mode_floor
        if isinstance(floor, int):
            return str(floor)
        if len(floor) != len(self.items) or any(not 0 <= f < 2 * UNSURE for f in floor):
            raise ValueError(f"mode floors {floor!r} for {len(self.items)} events")
        return "".join(map(str, floor))
    #: The project's engine parameters when it has an override (None: the store's own).
    params: EngineParams | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    applied: bool
    sigma: float | None
    fallback: float | None
    learned: int


class EngineStore(RedisStore):
    def __init__(
        self,
        client: Redis | RedisCluster,
        keys: Keys,
        params: EngineParams,
        *,
        run_ttl_s: int = 86_400,
        chain_ttl_s: int = 30 * 86_400,
        checkpoint_work: int = CHECKPOINT_WORK_PER_CALL,
    ) -> None:
        self.client = client
        self.keys = keys
        self.params = params
        self.run_ttl_s = run_ttl_s
        self.chain_ttl_s = chain_ttl_s
        self.checkpoint_work = checkpoint_work
        self.scripts = scripts_for(client)
        self._static = self._static_args(params)

    def _static_args(self, p: EngineParams) -> list[Any]:
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
        p = batch.params or self.params
        low, mid, high = p.decay_ppm()
        static = self._static if p is self.params else self._static_args(p)
        escape = ESCAPE_RULES.index(p.shape_escape)
        args: list[Any] = [
            now_ms, 1 if learn else 0, *static,
            ACTION_CODES.index(batch.locked_action), 1 if batch.eligible else 0,
            low, mid, high, self.run_ttl_s, self.chain_ttl_s, 1 if p.protect else 0,
            1 if p.window_stat == "robust" else 0, batch.floor_arg(),
            1 if p.decay == "uniform" else 0, repr(p.backoff_weight), 1 if p.protect_flags else 0,
            1 if p.lock_when_stable else 0, repr(p.novelty_limit), repr(p.repeat_factor),
            p.repeat_margin, repr(p.lock_novelty), UNLEARNABLE_RULES.index(p.unlearnable_rule),
            escape, repr(p.escape_floor_bits), self.checkpoint_work, p.field_escape_support,
            1 if p.freeze_vocabulary else 0, repr(p.ceiling_bits), len(batch.items),
        ]
        for item in batch.items:
            args.append(event_field(item.event_id))
            packed = (f"{run_index[item.run_id]} {1 if item.high_priority else 0}"
                      f"{1 if item.end_of_run else 0}{1 if item.hold else 0} {item.node}\t{item.action}")
            if escape >= 2 and item.paths:
                packed = f"{packed}\t{item.paths}"
            args.append(packed)
        return keys, args

    async def observe_answers(
        self, batches: Sequence[ChainBatch], *, learn: bool = True, now_ms: int | None = None,
        also: Sequence[tuple[AsyncScript, list[str], list[Any]]] = (),
    ) -> list[Answer]:
        """Run the observe script once per chain batch; the replies, read in place, in order.
        ``also``: further script calls (node labels) sent in the same round trip."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        calls = [self.observe_call(b, learn=learn, now_ms=now) for b in batches]
        started = time.perf_counter()
        raw = await run_many(self.client, self.scripts["observe"], calls, also)
        child(LUA_SECONDS, "observe").observe(time.perf_counter() - started)
        answers = [Answer(answer) for answer in raw]
        # a call that stopped for its checkpoint budget (not at an unsure mode floor, where the
        # engine's floor rounds go on): the rest of its events in further calls
        # (sent in parts about twice the size the last call answered: a call reads all the
        # events it is sent, so sending the whole rest again each time would cost the parsing
        # of a long batch many times over)
        parts: dict[int, list[Answer]] = {}
        done = {i: a.n for i, a in enumerate(answers)}
        step = {i: a.n for i, a in enumerate(answers)}
        while True:
            todo = [i for i, b in enumerate(batches)
                    if done[i] < len(b.items) and not b.unsure_at(done[i])]
            if not todo:
                break
            rest = [batches[i].rest(done[i], max(2 * step[i], 64)) for i in todo]
            more = await run_many(self.client, self.scripts["observe"],
                                  [self.observe_call(b, learn=learn, now_ms=now) for b in rest])
            CHECKPOINT_STOPS.inc(len(todo))
            for i, got in zip(todo, more, strict=True):
                answer = Answer(got)
                if answer.n == 0 and not rest[todo.index(i)].unsure_at(0):
                    raise RuntimeError("observe: a call past its checkpoint budget answered "
                                       "no event")
                parts.setdefault(i, [answers[i]]).append(answer)
                done[i] += answer.n
                step[i] = answer.n
        for i, p in parts.items():
            answers[i] = Answer.join(p)
        return answers

    async def observe(
        self, batches: Sequence[ChainBatch], *, learn: bool = True, now_ms: int | None = None,
        also: Sequence[tuple[AsyncScript, list[str], list[Any]]] = (),
    ) -> list[list[Observation]]:
        """:meth:`observe_answers` with every answer decoded into :class:`Observation` records."""
        answers = await self.observe_answers(batches, learn=learn, now_ms=now_ms, also=also)
        return [answer.observations() for answer in answers]

    async def feedback(
        self, tag: str, run_id: str, event_id: str, decision: str, *, now_ms: int | None = None
    ) -> FeedbackResult:
        p = self.params
        ck = self.keys.chain_keys(tag)
        keys = [ck.meta, ck.edges, ck.rows, ck.nodes, self.keys.run(tag, run_id), ck.coarse]
        now = int(time.time() * 1000) if now_ms is None else now_ms
        args: list[str | int | bytes] = [
            event_id, decision, now, p.node_cap, p.edge_cap,
            repr(p.sigma_multiplier), repr(p.fallback_bits), repr(p.sigma_min), repr(p.sigma_max),
            repr(p.sigma_step_up), repr(p.sigma_step_down), repr(p.fallback_min),
            repr(p.fallback_max), repr(p.fallback_step_up), repr(p.fallback_step_down),
            self.chain_ttl_s, event_field(event_id),
        ]
        started = time.perf_counter()
        code, sigma, fallback, learned = await self.scripts["feedback"](keys=keys, args=args)
        LUA_SECONDS.labels(script="feedback").observe(time.perf_counter() - started)
        if int(code) == ScriptCode.NOT_PENDING:
            return FeedbackResult(False, None, None, 0)
        raise_for_code(int(code), "feedback")
        return FeedbackResult(True, float(sigma), float(fallback), int(learned))

    async def reset(self, tag: str) -> int:
        keys = [*self.keys.chain_keys(tag).as_list(), self.keys.chain_labels(tag)]
        return int(await self.scripts["reset"](keys=keys, args=[]))

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

    async def coarse_counts(self, tag: str) -> dict[str, int]:
        """The back-off model's counts of a chain (fields as in ``lua/observe.lua`` KEYS[7]; not
        the field ``#`` that keeps the hash in Redis's hashtable encoding, chain_state.lua)."""
        raw = await self.client.hgetall(self.keys.chain_keys(tag).coarse)
        return {_s(k): int(v) for k, v in raw.items() if k != b"#"}

    async def chain_summary(self, tag: str) -> dict[str, Any]:
        """What a baseline listing shows of a chain: mode, runs, whether it is unlearnable and
        its current rate of new transitions (smoothed over checkpoints)."""
        meta = await self.chain_meta(tag)
        seen = int(meta.get("nt", 0))
        return {
            "mode": int(meta.get("mode", 0)),
            "runs": int(meta.get("runs", 0)),
            "unlearnable": meta.get("unl", "0") == "1",
            "novelty": int(meta.get("nw", 0)) / seen if seen else None,
        }

    # --- per-agent service modes (Engine: services new to an established agent) -----------
    async def run(self, rnd: Round) -> list[Any]:
        """Run a round of reads (the engine's first round trip when it has no guardrails)."""
        return await rnd.run()

    def service_mode_reads(self, agents: Sequence[tuple[str, str]]) -> list[Op]:
        """The reads of :meth:`service_modes`, to send in a round with other ops."""
        return [Command(("HGETALL", self.keys.agent_services(p, a))) for p, a in agents]

    @staticmethod
    def parse_service_modes(
        agents: Sequence[tuple[str, str]], raw: Sequence[Any]
    ) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
        """The answers of :meth:`service_mode_reads` → per agent {service field → (mode, runs)}."""
        out: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        for agent, fields in zip(agents, raw, strict=True):
            parsed: dict[str, tuple[int, int]] = {}
            for k, v in fields.items():
                mode, _, runs = _s(v).partition(":")
                parsed[_s(k)] = (int(mode), int(runs or 0))
            out[agent] = parsed
        return out

    async def service_modes(
        self, agents: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
        """Per (project, agent): {service field → (mode, runs)} as last recorded (one round trip
        for every agent of the batch)."""
        if not agents:
            return {}
        rnd = Round(self.client)
        rnd.extend(self.service_mode_reads(agents))
        return self.parse_service_modes(agents, await rnd.run())

    def service_mode_writes(
        self, records: Sequence[tuple[tuple[str, str], str, int, int]]
    ) -> list[Op]:
        """The writes of :meth:`record_service_modes`, to send in a round with other ops."""
        ops: list[Op] = []
        for (project_id, agent_id), field, mode, runs in records:
            key = self.keys.agent_services(project_id, agent_id)
            ops.append(Command(("HSET", key, field, f"{mode}:{runs}")))
            ops.append(Command(("EXPIRE", key, self.chain_ttl_s)))
        return ops

    async def record_service_modes(
        self, records: Sequence[tuple[tuple[str, str], str, int, int]]
    ) -> None:
        """Write ((project, agent), service field, mode, runs) records (idle TTL of a chain)."""
        if not records:
            return
        rnd = Round(self.client)  # one round trip
        rnd.extend(self.service_mode_writes(records))
        await rnd.run()


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
