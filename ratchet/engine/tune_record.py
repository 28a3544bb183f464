"""Record what threshold tuning needs from one real replay: every scored transition, per chain.

``ratchet tune`` replays a recorded file once through the real engine (``lua/observe.lua`` on a
private Redis namespace, deleted afterwards) and then re-evaluates a grid of threshold settings
offline. The Lua answer of an event shows one transition; an event that ends a run is scored
twice (into the node, and into END) and both scores enter the chain's rolling window. So each
chain is also run, beside the Lua, through the pure-Python reference (``models/reference.py``,
which the agreement tests hold identical to the Lua), instrumented to keep every assessed
transition. Every reference answer is compared with the Lua answer; a difference stops the
recording (:class:`models.errors.ConfigError` naming the event), so what is recorded is what the
engine did.

Per event the trace keeps what a different threshold could change: the scores (bits) of its one
or two transitions, whether each may be judged at all (a known node on an unlearnable chain, or
below ``min_support`` without back-off, never is), the chain's runs (window length), whether the
chain was force-locked (its sigma is at least ``forced_sigma``), its mode and mode floor, the
loop verdict (independent of thresholds), the guardrails' strictest action and whether they
held the event. Not kept: anything that would let a setting change what is *learned* — that is
the approximation documented in ``docs/tuning.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript

from models.errors import ConfigError
from models.events import IngestEvent
from models.observation import Answer, Observation
from models.params import ACTION_CODES, COUNT_SCALE, EngineParams
from models.reference import ReferenceChain, _Assessed
from models.verdict import Verdict
from ratchet.engine.engine import Engine
from ratchet.store.chains import ChainBatch, EngineStore

__all__ = ["EventTrace", "Recorder", "Recording"]


@dataclass(frozen=True, slots=True)
class EventTrace:
    """One non-duplicate event as the threshold rule saw it (see the module docstring)."""

    chain: int
    bits: tuple[float, ...]
    judgeable: tuple[bool, ...]
    runs: int
    forced: bool
    mode: int
    mode_floor: int
    looping: bool
    locked_action: int
    #: A guardrail (or the caller) held the event back from learning.
    ext_hold: bool
    #: What the engine answered (the agreement check of the offline re-scoring).
    anomalous: bool
    markov_action: int
    held: bool
    #: The chain holds back what it flags (``ReferenceChain.holds_flags``), not only pauses.
    holds_flags: bool = False
    #: Per transition, its action-model score when the chain is judged on its step order
    #: (``unlearnable_rule``: anomalous over the floor, whatever the window), else -1.
    order_bits: tuple[float, ...] = ()
    #: Per transition, whether its probability came from the shape escape (its threshold is at
    #: least ``escape_floor_bits``, whatever the grid point's floor).
    escaped: tuple[bool, ...] = ()


class _TracingChain(ReferenceChain):
    """The reference chain, keeping the transitions each ``observe`` assessed."""

    def __init__(self, params: EngineParams, *, eligible: bool, locked_action: str) -> None:
        super().__init__(params, eligible_chain=eligible, locked_action=locked_action)
        self.assessed: list[_Assessed] = []

    def _assess(
        self, src: str, to: str, prev_action: str, action: str, paths: str = ""
    ) -> _Assessed:
        a = super()._assess(src, to, prev_action, action, paths)
        self.assessed.append(a)
        return a

    def judgeable(self, a: _Assessed) -> bool:
        """Whether ``bits > threshold`` makes this transition anomalous (models.scoring)."""
        if self.unlearnable and self.by_action and self.params.unlearnable_rule == "actions":
            return False  # judged on its step order only: see EventTrace.order_bits
        if a.to_new:
            return True
        if self.unlearnable:
            return False
        p = self.params
        thin = p.backoff_weight <= 0 and p.min_support > 0
        return not (thin and a.row_total < p.min_support * COUNT_SCALE)


@dataclass
class Recording:
    """Events in input order (``None``: invalid line or redelivered id) plus their labels."""

    params: EngineParams
    traces: list[EventTrace | None] = field(default_factory=list)
    #: Per event: (project, agent, run) the event belongs to, its label (None: unlabelled),
    #: the strictest guardrail action (code) and the event id.
    runs: list[tuple[str, str, str]] = field(default_factory=list)
    labels: list[bool | None] = field(default_factory=list)
    guard_actions: list[int] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.traces)


class Recorder:
    """Shadows the engine's observe calls with tracing reference chains (see module doc).

    Use: ``recorder.attach(engine)`` before the first event (``replay(on_engine=...)``) and
    ``recorder.verdict(event, verdict)`` for every answer (``replay(on_verdict=...)``).
    """

    def __init__(self, params: EngineParams) -> None:
        self.params = params
        self.recording = Recording(params)
        self._chains: dict[str, _TracingChain] = {}
        self._chain_index: dict[str, int] = {}
        self._pending: dict[tuple[str, str], EventTrace] = {}

    def attach(self, engine: Engine) -> None:
        engine.store = _RecordingStore(engine.store, self)

    def shadow(self, batches: Sequence[ChainBatch], answers: Sequence[Sequence[Observation]],
               learn: bool) -> None:
        for batch, answer in zip(batches, answers, strict=True):
            chain = self._chains.get(batch.tag)
            if chain is None:
                chain = self._chains[batch.tag] = _TracingChain(
                    self.params, eligible=batch.eligible, locked_action=batch.locked_action
                )
                self._chain_index[batch.tag] = len(self._chain_index)
                self.recording.chains.append(batch.tag)
            # a call may stop before an event whose mode floor was not known yet (the engine
            # sends the rest again): the answered events are a prefix of the batch
            answered = batch.items[:len(answer)]
            for k, (item, obs) in enumerate(zip(answered, answer, strict=True)):
                chain.assessed.clear()
                # the floor the event is acted by while the chain is in shadow (the grid acts
                # by the chain's own mode once it left shadow)
                floor = batch.floor_at(k)
                ref = chain.observe(
                    item.event_id, item.run_id, item.node, high_priority=item.high_priority,
                    end_of_run=item.end_of_run, hold=item.hold, learn=learn,
                    mode_floor=batch.floor_at(k), action=item.action, paths=item.paths,
                )
                if ref != obs:
                    raise ConfigError(
                        f"tune: the reference chain differs from the Lua engine at event "
                        f"{item.event_id!r} of chain {batch.tag} ({ref} != {obs}); the offline "
                        "re-scoring would not be the engine's rule"
                    )
                if obs.duplicate:
                    continue
                # judgeable() reads `unlearnable` after observe: the checkpoint that may flip it
                # runs before the assessment, so it is the value the assessment used
                self._pending[(batch.tag, item.event_id)] = EventTrace(
                    chain=self._chain_index[batch.tag],
                    bits=tuple(a.bits for a in chain.assessed),
                    judgeable=tuple(chain.judgeable(a) for a in chain.assessed),
                    runs=obs.runs,
                    forced=chain.forced,
                    mode=obs.mode,
                    mode_floor=floor,
                    looping=self.params.repeat_factor > 0 and obs.repeats > obs.repeat_limit,
                    locked_action=ACTION_CODES.index(batch.locked_action),
                    ext_hold=item.hold,
                    anomalous=obs.anomalous,
                    markov_action=ACTION_CODES.index(obs.action),
                    held=obs.held,
                    holds_flags=chain.holds_flags,
                    order_bits=tuple(a.order_bits for a in chain.assessed),
                    escaped=tuple(a.escaped for a in chain.assessed),
                )

    def verdict(self, event: IngestEvent, verdict: Verdict) -> None:
        rec = self.recording
        trace = None if verdict.duplicate else self._pending.pop(
            (verdict.chain_tag, verdict.event_id), None
        )
        rec.traces.append(trace)
        rec.runs.append((event.project_id, event.agent_id, event.run_id))
        rec.labels.append(event.label)
        rec.event_ids.append(event.event_id)
        guard = 0
        for r in verdict.reasons:
            if r.source != "markov":
                guard = max(guard, ACTION_CODES.index(r.action))
        rec.guard_actions.append(guard)


class _RecordingStore(EngineStore):
    """The engine's store, unchanged, plus a shadow of every observe call."""

    def __init__(self, inner: EngineStore, recorder: Recorder) -> None:
        super().__init__(inner.client, inner.keys, inner.params, run_ttl_s=inner.run_ttl_s,
                         chain_ttl_s=inner.chain_ttl_s)
        self.recorder = recorder

    async def observe_answers(
        self, batches: Sequence[ChainBatch], *, learn: bool = True, now_ms: int | None = None,
        also: Sequence[tuple[AsyncScript, list[str], list[Any]]] = (),
    ) -> list[Answer]:
        # the engine reads the replies in place (observe() decodes through this too)
        answers = await super().observe_answers(batches, learn=learn, now_ms=now_ms, also=also)
        self.recorder.shadow(batches, [a.observations() for a in answers], learn)
        return answers
