"""Redis adapter of the guardrail state: one ``lua/guardrails.lua`` call per agent per batch.

The script counts the events (velocity windows, cost sums, run positions and nodes) atomically
and answers, per event, the numbers the rules read; this module builds its KEYS/ARGV and turns
the flat answer back into :class:`models.guardrails.GuardrailState` objects. The rules
themselves run in Python (:func:`models.guardrails.evaluate`), so Lua and Python never hold
two copies of the same logic.

A redelivered event id is not counted again: the script answers the state stored for it the
first time. Its ``run_nodes`` are rebuilt from the run's node list, which keeps twice the
policy's ``history`` so a redelivery within ``history`` events of the run's newest sees exactly
the nodes the first decision saw. Nodes are kept in a compact stored form (:func:`stored_node`:
8 raw bytes instead of 16 hex digits), each behind a byte of length, in one string per run (not
a list): ≈ 18 bytes of Redis less per event (docs/operations.md, "What Redis keeps per event").
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import xxhash
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.errors import StoreError
from models.guardrails import GuardrailState, StateSpec
from models.guardrails.order import (
    REDELIVERED_PAIR,
    REDELIVERED_STREAK,
    START,
    OrderFinding,
    StreakFinding,
)
from models.guardrails.values import (
    RANGE,
    VALUE_CAP,
    Observation,
    ValueFinding,
    pack_observations,
    redelivered,
)
from models.verdict_build import make_guardrail_state, slot_builder
from ratchet.store.keys import Keys, event_field
from ratchet.store.redis import RedisStore
from ratchet.store.round import Round, ScriptCall
from ratchet.store.scripts import run_many, scripts_for
from ratchet.telemetry.children import child
from ratchet.telemetry.metrics import LUA_SECONDS

__all__ = ["ORDER_CAP", "SLOTS", "START_STEP", "GuardAnswer", "GuardBatch", "GuardItem",
           "GuardStore", "make_guard_item", "node_text", "step_of", "stored_node", "stored_step"]

#: Slots per velocity window: a count covers between 59/60 and all of the window.
SLOTS = 60
#: Nodes kept per run, as a multiple of the policy's history (the rest is redelivery slack).
NODE_SLACK = 2
#: Most fields of an agent's step-order hash (≈ 1,300 distinct step pairs): a full one learns
#: no new pair and still judges them (docs/guardrails.md, "order").
ORDER_CAP = 4_096
#: One judged-new pair's detail in the reply: previous step, times followed, successors, runs.
DETAIL = struct.Struct("<8sIII")
#: One too-long streak's detail in the reply: the streak, the longest learned, times reached.
STREAK = struct.Struct("<III")
#: One judged value's detail in the reply: its index in the event, kind, range (or distinct
#: values), times its slot was learned.
VALUE = struct.Struct("<BBBBI")
#: Reply bits of the step order and the values (lua/guardrails.lua): pair judged new, streak
#: too long, a magnitude beyond its range, a category value unseen.
_PAIR, _STREAK, _RANGE, _UNSEEN = 16, 64, 32, 128
_HEX = frozenset("0123456789abcdef")
#: Prefix of a stored node that is text but could pass for 8 raw bytes (see :func:`stored_node`).
_TEXT = b"\0t"
#: Longest node kept as its text (an entry's length is one byte); longer ones by their hash.
_LONGEST = 250


def stored_node(node: str) -> bytes:
    r"""A node as the run's node list keeps it: a node of 16 lowercase hex digits (every real
    node, ``models.nodes.node_id``) as its 8 bytes; any other node as its UTF-8 text, behind
    ``\0t`` when that text is 8 bytes long or starts so (so it never passes for raw bytes); a
    node of more than 250 bytes by its 64-bit hash (its entry's length is one byte).

    >>> stored_node("00ff00ff00ff00ff"), stored_node("n1"), stored_node("abcdefgh")
    (b'\x00\xff\x00\xff\x00\xff\x00\xff', b'n1', b'\x00tabcdefgh')
    """
    if len(node) == 16 and _HEX.issuperset(node):
        return bytes.fromhex(node)
    text = node.encode()
    if len(text) > _LONGEST:  # kept by its hash: the same node still compares equal
        return bytes.fromhex(xxhash.xxh3_64_hexdigest(text))
    return _TEXT + text if len(text) == 8 or text.startswith(_TEXT) else text


#: Entries of the nodes seen lately (a worker sees the same few nodes over and over); bounded.
_ENTRIES: dict[str, bytes] = {}
_ENTRIES_MAX = 16_384


def _entry(node: str) -> bytes:
    """A node as one entry of the run's nodes string: a byte of length, its stored form
    (remembered per node: a pure function of it)."""
    got = _ENTRIES.get(node)
    if got is None:
        stored = stored_node(node)
        got = bytes((len(stored),)) + stored
        if len(_ENTRIES) >= _ENTRIES_MAX:
            _ENTRIES.clear()
        _ENTRIES[node] = got
    return got


def _held(line: Sequence[Any]) -> tuple[int, list[str]]:
    """A run's line of the answer: the position of its first held node, and those nodes."""
    blob: bytes = line[1] if len(line) > 1 else b""
    nodes, at = [], 0
    while at < len(blob):
        size = blob[at]
        nodes.append(node_text(blob[at + 1:at + 1 + size]))
        at += 1 + size
    return int(line[0]), nodes


def node_text(stored: bytes | str) -> str:
    """The node of a stored form (:func:`stored_node`; the hex text the previous release kept
    reads as itself).

    >>> [node_text(stored_node(n)) for n in ("00ff00ff00ff00ff", "n1", "abcdefgh")]
    ['00ff00ff00ff00ff', 'n1', 'abcdefgh']
    """
    if isinstance(stored, str):
        stored = stored.encode()
    if len(stored) == 8:
        return stored.hex()
    if stored.startswith(_TEXT):
        return stored[2:].decode()
    return stored.decode()


#: The step before a run's first call, as the script keeps it (lua/guardrails.lua).
START_STEP = bytes(8)
#: Steps seen lately, both ways (text → stored form, stored form → text); bounded.
_STEPS: dict[str, bytes] = {}
_STEP_TEXT: dict[bytes, str] = {START_STEP: START}


def stored_step(step: str) -> bytes:
    """A step (``service:action``) as the order state keeps it: 8 bytes of its xxh3_64 (never
    the start step's eight zero bytes), remembered both ways for the reasons' text."""
    got = _STEPS.get(step)
    if got is None:
        got = xxhash.xxh3_64_digest(step.encode())
        if got == START_STEP:
            got = b"\0\0\0\0\0\0\0\1"
        if len(_STEPS) >= _ENTRIES_MAX:
            _STEPS.clear()
            _STEP_TEXT.clear()
            _STEP_TEXT[START_STEP] = START
        _STEPS[step] = got
        _STEP_TEXT[got] = step
    return got


def step_of(stored: bytes) -> str:
    """The text of a stored step (its hash in hex when no worker step here has seen it)."""
    return _STEP_TEXT.get(stored) or f"step {stored.hex()}"


@dataclass(frozen=True, slots=True)
class GuardItem:
    """One event as the guardrails script needs it."""

    event_id: str
    run_id: str
    time_ms: int
    node: str
    cost: float | None = None
    #: ``service:action`` (models.guardrails.order.step_text); "" = no step order.
    step: str = ""
    #: The values the rule reads (models.guardrails.values.observations); () = none.
    values: tuple[Observation, ...] = ()
    #: What this event's reports may not teach (``models.guardrails.state.HOLD_*`` bits): the
    #: rule that reports holds the event itself (its action for the event's service or
    #: priority is pause or reject), so what it reports waits for a person like any held
    #: call — it never counts towards ``learn_after``.
    hold: int = 0


@dataclass(frozen=True, slots=True)
class GuardBatch:
    """Events of one agent (``tag`` = :meth:`Keys.guard_tag`), in order, and what to keep."""

    tag: str
    items: Sequence[GuardItem]
    spec: StateSpec


@dataclass(frozen=True, slots=True)
class GuardAnswer:
    duplicate: bool
    state: GuardrailState


#: ``GuardItem(event_id, run_id, time_ms, node, cost, step, values)``, positionally, slot by
#: slot (one per event: the same frozen object, without the keyword-matching constructor).
make_guard_item = cast(
    Callable[[str, str, int, str, "float | None", str, "tuple[Observation, ...]", int],
             GuardItem],
    slot_builder(GuardItem, "make_guard_item"))
#: ``GuardAnswer(duplicate, state)``, positionally, slot by slot (the same frozen object).
make_guard_answer = cast(Callable[[bool, GuardrailState], GuardAnswer],
                         slot_builder(GuardAnswer, "make_guard_answer"))


#: One event's record in the script's reply (lua/guardrails.lua, Output): status, which values
#: are present (bit 0 agent window count, 1 run window count, 2 run cost, 3 agent daily cost),
#: then position, the two counts and the two costs as doubles.
RECORD = struct.Struct("<BBddddd")


def _records(batch: GuardBatch, raw: Sequence[Any]) -> list[tuple[Any, ...]]:
    blob = raw[0] if raw else b""
    if isinstance(blob, str):
        blob = blob.encode("latin-1")
    if len(blob) != RECORD.size * len(batch.items):
        raise StoreError(f"guardrails reply: {len(blob)} bytes of records for "
                         f"{len(batch.items)} events (script and adapter of different releases?)")
    return list(RECORD.iter_unpack(blob))


class GuardStore(RedisStore):
    def __init__(
        self, client: Redis | RedisCluster, keys: Keys, *, run_ttl_s: int = 86_400,
        order_ttl_s: int = 30 * 86_400,
    ) -> None:
        self.client = client
        self.keys = keys
        self.run_ttl_s = run_ttl_s
        #: Idle life of an agent's step order (the chains' TTL: learned like a baseline).
        self.order_ttl_s = order_ttl_s
        self.order_cap = ORDER_CAP
        self.value_cap = VALUE_CAP
        self.scripts = scripts_for(client)

    def call(self, batch: GuardBatch) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one script call (exposed for tests and benchmarks)."""
        spec = batch.spec
        agent = self.keys.guard_agent_keys(batch.tag)
        keys = [agent.window, agent.cost, agent.order, agent.values]
        run_index: dict[str, int] = {}
        for item in batch.items:
            if item.run_id not in run_index:
                run_index[item.run_id] = len(keys) + 1
                keys += self.keys.guard_run_keys(batch.tag, item.run_id).as_list()
        args: list[Any] = [
            (spec.agent_window_s or 0) * 1000,
            (spec.run_window_s or 0) * 1000,
            SLOTS,
            spec.history * NODE_SLACK,
            1 if spec.run_cost else 0,
            1 if spec.agent_daily_cost else 0,
            self.run_ttl_s,
            len(batch.items),
        ]
        order = spec.order
        if order is None:
            args += [0, 0, 0, 0, 0, self.order_ttl_s, 0]
        else:
            args += [order.min_runs, order.min_support, order.max_successors, order.learn_after,
                     self.order_cap, self.order_ttl_s, order.streak_settled]
        values = spec.values
        if values is None:
            args += [0, 0, 0, 0, 0, 0, self.order_ttl_s, ""]
        else:
            slots = {o.slot: None for item in batch.items for o in item.values}
            args += [values.min_support, values.margin, values.margin_below, values.max_distinct,
                     values.learn_after, self.value_cap, self.order_ttl_s, b"".join(slots)]
        args.append(bytes(48 + item.hold for item in batch.items)
                    if any(item.hold for item in batch.items) else "")
        for item in batch.items:
            args += [
                event_field(item.event_id),
                run_index[item.run_id],
                item.time_ms,
                _entry(item.node),
                "" if item.cost is None else repr(item.cost),
                stored_step(item.step) if order is not None and item.step else "",
                pack_observations(item.values) if values is not None and item.values else "",
            ]
        return keys, args

    async def run(self, rnd: Round) -> list[Any]:
        """Run a round of other reads (no guardrail state needed: no stateful rule)."""
        return await rnd.run()

    async def update(
        self, batches: Sequence[GuardBatch], *, beside: Round | None = None
    ) -> list[list[GuardAnswer]]:
        """Run the script once per agent batch (pipelined; concurrent on a cluster).

        ``beside``: a round of other reads (the engine's service-mode records) the calls join
        and which this method runs: one round trip for both; its answers stay in the round."""
        calls = [self.call(b) for b in batches]
        started = time.perf_counter()
        if beside is None:
            raw = await run_many(self.client, self.scripts["guardrails"], calls)
        else:
            script = self.scripts["guardrails"]
            at = beside.extend([ScriptCall(script, k, a) for k, a in calls])
            answers = await beside.run()
            raw = [answers[i] for i in at]
        child(LUA_SECONDS, "guardrails").observe(time.perf_counter() - started)
        return [parse_answers(b, r) for b, r in zip(batches, raw, strict=True)]


    async def feedback(self, tag: str, run_id: str, event_id: str, decision: str, *,
                       max_distinct: int, margin: int, margin_below: int) -> int:
        """A person's decision on an event a learning rule held (lua/guard_feedback.lua):
        approve teaches the agent's step order and values what the rule reported for it (a
        magnitude: the range reaches it with its margin, not past it), reject forgets it.
        Returns the lessons applied (0: none were pending)."""
        agent = self.keys.guard_agent_keys(tag)
        run = self.keys.guard_run_keys(tag, run_id)
        got = await self.scripts["guard_feedback"](
            keys=[agent.order, agent.values, run.state],
            args=[event_field(event_id), decision, self.order_cap, max_distinct,
                  self.order_ttl_s, self.order_ttl_s, margin, margin_below])
        return int(got)


def parse_answers(batch: GuardBatch, raw: Sequence[Any]) -> list[GuardAnswer]:
    """The script's flat answer → one :class:`GuardAnswer` per item (see lua/guardrails.lua).

    A run's known nodes are contiguous positions: those its list held before the batch, then
    the batch's new events of the run in order (the script gives them the next positions). So
    each run's nodes are one list and an event's ``run_nodes`` one slice of it."""
    history = batch.spec.history
    runs: dict[str, tuple[int, list[str]]] = {}
    lines = iter(raw[2:])
    for item in batch.items:
        if item.run_id not in runs:
            runs[item.run_id] = _held(next(lines))
    rows = _records(batch, raw)
    for item, f in zip(batch.items, rows, strict=True):
        if f[0] == 0:
            first, nodes = runs[item.run_id]
            if int(f[2]) != first + len(nodes):
                return _parse_sparse(batch, raw)  # not contiguous: never from this script
            nodes.append(item.node)
    # each run's nodes as one tuple: an event's run_nodes is one slice of it (no second copy);
    # the answer objects built positionally, slot by slot (models/verdict_build.py's builders:
    # the same frozen objects, ≈ 3x cheaper than keyword construction)
    known = {run: (first, tuple(nodes)) for run, (first, nodes) in runs.items()}
    out: list[GuardAnswer] = []
    empty: tuple[str, ...] = ()
    details = _Details(raw)
    for item, (status, present, p, agent, run, run_cost, agent_cost) in zip(
            batch.items, rows, strict=True):
        pos = int(p)
        first, seq = known[item.run_id]
        lo, hi = max(pos - history, first), min(pos, first + len(seq))
        out.append(make_guard_answer(status == 1, make_guardrail_state(
            item.node, seq[lo - first:hi - first] if hi > lo else empty, pos + 1,
            int(agent) if present & 1 else None, int(run) if present & 2 else None,
            run_cost if present & 4 else None, agent_cost if present & 8 else None,
            *details.findings(status, present, item))))
    return out


_COUNT = struct.Struct("<B")


class _Details:
    """The step-order and value details of a reply (lua/guardrails.lua, Output [2]), read in
    event order."""

    def __init__(self, raw: Sequence[Any]) -> None:
        blob = raw[1] if len(raw) > 1 else b""
        self.blob = blob.encode("latin-1") if isinstance(blob, str) else bytes(blob)
        self.at = 0

    def _take(self, layout: struct.Struct) -> tuple[Any, ...]:
        end = self.at + layout.size
        if end > len(self.blob):
            raise StoreError("guardrails reply: details shorter than its records say")
        got = layout.unpack_from(self.blob, self.at)
        self.at = end
        return got

    def findings(self, status: int, present: int, item: GuardItem
                 ) -> tuple[OrderFinding | None, StreakFinding | None, tuple[ValueFinding, ...]]:
        """One event's findings: a new event judged so reads its details; a redelivered one
        was judged so the first time (its counts are not kept)."""
        if not present & (_PAIR | _STREAK | _RANGE | _UNSEEN):
            return None, None, ()
        if status == 1:
            return (REDELIVERED_PAIR if present & _PAIR else None,
                    REDELIVERED_STREAK if present & _STREAK else None,
                    redelivered(bool(present & _RANGE), bool(present & _UNSEEN)))
        found = streak = None
        if present & _PAIR:
            prev, from_seen, successors, runs = self._take(DETAIL)
            found = OrderFinding(step_of(prev), from_seen, successors, runs)
        if present & _STREAK:
            streak = StreakFinding(*self._take(STREAK))
        judged: tuple[ValueFinding, ...] = ()
        if present & (_RANGE | _UNSEEN):
            (count,) = self._take(_COUNT)
            out = []
            for _ in range(count):
                index, kind, low, high, seen = self._take(VALUE)
                if index >= len(item.values):
                    raise StoreError("guardrails reply: a value detail names an observation the "
                                     "event did not send")
                o = item.values[index]
                out.append(ValueFinding(o.path, kind, low, high, seen,
                                        o.value if kind == RANGE else None))
            judged = tuple(out)
        return found, streak, judged


def _parse_sparse(batch: GuardBatch, raw: Sequence[Any]) -> list[GuardAnswer]:
    """:func:`parse_answers` for positions that are not contiguous: one node per position."""
    history = batch.spec.history
    known: dict[str, dict[int, str]] = {}
    runs_in_order: list[str] = []
    for item in batch.items:
        if item.run_id not in known:
            known[item.run_id] = {}
            runs_in_order.append(item.run_id)
    for run_id, line in zip(runs_in_order, raw[2:], strict=True):
        first, nodes = _held(line)
        known[run_id].update((first + i, node) for i, node in enumerate(nodes))
    rows = _records(batch, raw)
    for item, f in zip(batch.items, rows, strict=True):
        if f[0] == 0:
            known[item.run_id][int(f[2])] = item.node
    out: list[GuardAnswer] = []
    details = _Details(raw)
    for item, f in zip(batch.items, rows, strict=True):
        pos = int(f[2])
        seq = known[item.run_id]
        run_nodes = tuple(seq[p] for p in range(max(0, pos - history), pos) if p in seq)
        state = GuardrailState(
            node=item.node,
            run_nodes=run_nodes,
            run_events=pos + 1,
            agent_events_in_window=int(f[3]) if f[1] & 1 else None,
            run_events_in_window=int(f[4]) if f[1] & 2 else None,
            run_cost=f[5] if f[1] & 4 else None,
            agent_daily_cost=f[6] if f[1] & 8 else None,
        )
        found, streak, judged = details.findings(f[0], f[1], item)
        state = replace(state, order=found, streak=streak, values=judged)
        out.append(GuardAnswer(duplicate=f[0] == 1, state=state))
    return out
