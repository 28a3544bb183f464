"""What a worker does with a batch of Kafka messages, without Faust: decode → decide → save → emit.

The Faust agents (:mod:`streams.agents`) only move bytes between Kafka and these processors, so
this logic is testable with a real Redis and no broker.

Failure policy (docs/design.md §2: a guard *error* is never a detection):

* Redis unavailable (:class:`UnavailableError`, connection/timeout errors): the batch is retried
  with capped exponential backoff until Redis answers or the worker stops. The Kafka messages are
  acked only after their verdicts are saved and produced, so a worker stopped or killed while
  waiting leaves them uncommitted and they are redelivered. Redelivery is harmless: the engine
  dedups by event id and returns the stored answer again.
* An envelope that is not valid JSON / not a known envelope version: logged, counted
  (``ratchet_worker_messages_total{result="invalid"}``) and skipped — it has no event ids to answer.
* Any other exception (a bug, a poison event, corrupted state): the batch is retried per envelope;
  an envelope that still fails gets verdicts with ``error`` set and the action of its project's
  ``on_error`` policy (:mod:`models.on_error`: by default ``pause`` for high/critical events,
  ``allow`` for the rest), counted in ``ratchet_error_verdicts_total{action}``. So a caller
  waiting for its verdict is answered, and provoking an engine error is never a way past a rule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import orjson

from models.envelope import (
    ENVELOPE_VERSION,
    TRACE_HEADER,
    FeedbackMessage,
    IngestEnvelope,
    agent_key,
    decode_feedback,
    decode_ingest,
)
from models.errors import RatchetError, UnavailableError, ValidationError
from models.events import IngestEvent
from models.on_error import on_error_action
from models.verdict import Edge, Verdict, deciding_sources
from models.verdict_stored import encode_stored
from models.verdict_wire import encode_compact, verdict_row
from ratchet.store.policies import PolicySource
from ratchet.store.redis import REDIS_FAILURES
from ratchet.store.round import Deferred, Op
from ratchet.telemetry.children import child
from ratchet.telemetry.metrics import (
    ERROR_VERDICTS,
    FEEDBACK,
    INGEST_TO_VERDICT_SECONDS,
    SPECULATED,
    VERDICTS,
    WORKER_BATCH_SECONDS,
    WORKER_MESSAGES,
    WORKER_REPLIES,
    WORKER_RETRIES,
)
from ratchet.telemetry.projects import count_project_verdicts
from streams.decisions import decision_records, log_records

__all__ = [
    "Backoff",
    "DecideEngine",
    "FeedbackProcessor",
    "IngestProcessor",
    "ModeAudit",
    "Outgoing",
    "ReplySink",
    "VerdictStoreLike",
    "decode_ingest_trusted",
    "error_verdict",
    "retry_unavailable",
]

log = logging.getLogger("ratchet.worker")

T = TypeVar("T")

#: Exceptions that mean "a dependency is down, try again later" — never a detection.
TRANSIENT: tuple[type[BaseException], ...] = (UnavailableError, *REDIS_FAILURES)


class DecideEngine(Protocol):
    """The part of :class:`ratchet.engine.engine.Engine` a worker uses."""

    async def decide(
        self,
        events: Sequence[IngestEvent],
        *,
        learn: bool = True,
        trace_id: str = "",
        holds: Sequence[bool] | None = None,
        writes: Deferred | None = None,
    ) -> list[Verdict]: ...

    async def feedback(self, chain_tag: str, run_id: str, event_id: str, decision: str, *,
                       project_id: str = "", agent_id: str = "") -> object: ...


class ModeAudit(Protocol):
    """The part of :class:`ratchet.audit.AuditLog` a worker uses (mode changes)."""

    async def append(
        self, project_id: str, action: str, actor: str, target: str,
        details: Mapping[str, Any] | None = None,
    ) -> object: ...


class VerdictStoreLike(Protocol):
    """The part of :class:`ratchet.store.verdicts.VerdictStore` a worker uses."""

    async def save_many(
        self, verdicts: Sequence[Verdict], ttl_s: int, *, bodies: Sequence[bytes] | None = None,
        before: Sequence[Op] = (), after: Sequence[Op] = (),
    ) -> list[Any]: ...

    async def get(self, project_id: str, event_id: str) -> Mapping[str, Any] | None: ...


class ReplySink(Protocol):
    """Where verdicts of waiting callers go (:class:`ratchet.store.replies.ReplyPublisher`)."""

    async def publish(self, replies: Sequence[tuple[str, bytes]]) -> list[int]: ...

    def ops(self, replies: Sequence[tuple[str, bytes]]) -> list[Op] | None: ...


@dataclass
class Backoff:
    """Capped exponential backoff: ``first_s``, doubling, at most ``max_s`` between attempts."""

    first_s: float = 0.05
    max_s: float = 2.0

    def delays(self) -> Callable[[], float]:
        current = self.first_s

        def next_delay() -> float:
            nonlocal current
            delay = current
            current = min(current * 2, self.max_s)
            return delay

        return next_delay


async def retry_unavailable(
    action: Callable[[], Awaitable[T]], backoff: Backoff, *, what: str
) -> T:
    """Run ``action`` until it does not fail with a transient error (cancellation stops it)."""
    next_delay = backoff.delays()
    failures = 0
    while True:
        try:
            return await action()
        except TRANSIENT as exc:
            failures += 1
            WORKER_RETRIES.labels(reason="unavailable").inc()
            delay = next_delay()
            if failures == 1 or failures % 20 == 0:
                log.warning(
                    "%s: dependency unavailable (%s); retry %d in %.2fs — messages stay "
                    "uncommitted until this succeeds", what, exc, failures, delay,
                )
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka message to produce."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    #: Empty: the verdicts topic; else the topic to send to (the decisions topic).
    topic: str = ""


def error_verdict(
    ev: IngestEvent, trace_id: str, message: str, now: float, action: str = "allow"
) -> Verdict:
    """The answer for an event Ratchet failed to judge: ``action`` (from
    :func:`models.on_error.on_error_action`), with ``error`` set."""
    return Verdict(
        event_id=ev.event_id,
        agent_id=ev.agent_id,
        run_id=ev.run_id,
        chain="",
        mode="shadow",
        anomalous=False,
        score=0.0,
        threshold=0.0,
        edge=Edge("", "", 0.0, 0.0, 0.0),
        action=action,
        reasons=(),
        decided_at=now,
        trace_id=trace_id,
        project_id=ev.project_id,
        error=message,
    )


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(IngestEvent))
_REQUIRED_STR = ("event_id", "agent_id", "run_id", "service", "action")


def decode_ingest_trusted(body: bytes) -> IngestEnvelope:
    """Decode an envelope the gateway wrote (and validated) without validating every event again.

    Structural checks only (field names, required strings, payload an object); anything unusual
    goes through the full :func:`models.envelope.decode_ingest`, which raises on invalid input.
    Saves ~10 µs per event on the worker's hot path.
    """
    if body[:1] != b"{":  # the compact (MessagePack) wire version: typed, checked by msgspec
        return decode_ingest(body)
    obj = orjson.loads(body)
    if not isinstance(obj, dict) or obj.get("v") != ENVELOPE_VERSION:
        return decode_ingest(body)
    project_id = obj.get("project_id")
    raw_events = obj.get("events")
    if type(project_id) is not str or type(raw_events) is not list:
        return decode_ingest(body)
    events: list[IngestEvent] = []
    for e in raw_events:
        if (
            type(e) is not dict
            or not _EVENT_FIELDS.issuperset(e)
            or e.get("project_id") != project_id
            or type(e.get("payload")) is not dict
            or any(type(e.get(name)) is not str for name in _REQUIRED_STR)
        ):
            return decode_ingest(body)
        events.append(IngestEvent(**e))
    return IngestEnvelope(
        project_id=project_id,
        agent_id=str(obj["agent_id"]),
        trace_id=str(obj.get("trace_id", "")),
        received_at=float(obj.get("received_at", 0.0)),
        events=tuple(events),
        wait=bool(obj.get("wait", False)),
        reply=str(obj.get("reply", "")),
    )


def _count_replies(heard: Sequence[int]) -> None:
    delivered = sum(1 for n in heard if n)
    if delivered:
        child(WORKER_REPLIES, "delivered").inc(delivered)
    if delivered < len(heard):
        child(WORKER_REPLIES, "no_listener").inc(len(heard) - delivered)


def _source(v: Verdict) -> str:
    """The ``source`` label: the kind of the reasons whose action is the verdict's (a weaker
    reason decided nothing); a guardrail tied with the Markov chain counts as ``guardrail``."""
    deciding = deciding_sources(v.action, v.reasons)
    if not deciding:
        return "none"
    return "markov" if deciding == ("markov",) else "guardrail"


@dataclass
class IngestProcessor:
    """Ingest envelopes → one engine call → verdicts saved in one pipeline → verdict envelopes."""

    engine: DecideEngine
    store: VerdictStoreLike
    verdict_ttl_s: int = 86_400
    backoff: Backoff = field(default_factory=Backoff)
    clock: Callable[[], float] = time.time
    #: The projects' policies, for their ``on_error`` choice (None: the default by priority).
    policies: PolicySource | None = None
    #: Also send decision-log records to this Kafka topic (empty: logged only).
    decisions_topic: str = ""
    #: Where mode changes are audited (``chain.mode_changed``); None: logged only.
    audit: ModeAudit | None = None
    #: Reply routes of waiting callers (None: waiters are answered only by lookup).
    replies: ReplySink | None = None

    def decode(self, bodies: Sequence[bytes]) -> list[IngestEnvelope]:
        """Decode message bodies; invalid ones are logged, counted and dropped."""
        out: list[IngestEnvelope] = []
        for body in bodies:
            try:
                out.append(decode_ingest_trusted(body))
            except (ValidationError, KeyError, TypeError, ValueError) as exc:
                WORKER_MESSAGES.labels(topic="ingest", result="invalid").inc()
                log.error("dropping an invalid ingest message (%d bytes): %s", len(body), exc)
        return out

    async def process(self, envelopes: Sequence[IngestEnvelope]) -> list[Outgoing]:
        """Verdict envelopes for ``envelopes`` (one per envelope, same order)."""
        if not envelopes:
            return []
        started = time.perf_counter()
        heard: list[int] | None
        try:
            verdicts, rows, heard = await retry_unavailable(
                lambda: self._decide_and_save(envelopes), self.backoff, what="ingest batch"
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ingest batch of %d envelopes failed; isolating", len(envelopes))
            verdicts, rows, heard = [], [], None
            for env in envelopes:
                one, built = await self._one_guarded(env)
                verdicts.extend(one)
                rows.extend(built)
        out = self._emit(envelopes, verdicts, rows)
        if heard is None:
            await self._reply(envelopes, out)
        else:
            _count_replies(heard)
        out.extend(await self._decisions(verdicts))
        WORKER_BATCH_SECONDS.observe(time.perf_counter() - started)
        child(WORKER_MESSAGES, "ingest", "ok").inc(len(envelopes))
        return out

    async def _decide_and_save(
        self, envelopes: Sequence[IngestEnvelope], *, reply: bool = True, again: bool = False
    ) -> tuple[list[Verdict], list[list[Any]], list[int] | None]:
        """Decide, then save; returns the verdicts, their rows (``verdict_row``: built once for
        the bytes stored and the verdict envelopes, :meth:`_emit`) and,
        when the replies to waiting callers went out with the save, what each reply reached
        (None: they are still to publish; always with ``reply=False``, the isolating path,
        which answers every envelope by :meth:`_reply`).

        Two Redis round trips for a small batch of allow verdicts on one Redis: the engine's
        guardrail state with the service-mode reads and dry observe calls; then the learning
        observe calls and the service-mode writes the engine hands back, the verdict save and
        the replies, one pipeline (replies behind the save, so a caller whose reply is lost
        finds the verdict saved). When the learning calls answer otherwise than the dry ones
        (another writer of the chain in between, :meth:`Engine._speculated`) the batch is
        decided once more: the engine then answers every event by the answer stored for it,
        which is saved and sent again. Bulk batches: the observe calls in a round trip of
        their own (three)."""
        if len(envelopes) == 1:
            events: Sequence[IngestEvent] = envelopes[0].events
        else:
            events = [ev for env in envelopes for ev in env.events]
        trace = envelopes[0].trace_id
        writes = Deferred()
        verdicts = await self.engine.decide(events, learn=True, trace_id=trace, writes=writes)
        if len(envelopes) > 1:
            i = 0
            for env in envelopes:
                n = len(env.events)
                if env.trace_id != trace:
                    for j in range(i, i + n):
                        # The verdicts were built by decide() a moment ago and nobody else holds
                        # them; setting the field in place costs ~0.1 µs where
                        # dataclasses.replace costs ~5 µs per event.
                        object.__setattr__(verdicts[j], "trace_id", env.trace_id)
                i += n
        rows = [verdict_row(v) for v in verdicts]
        bodies = [encode_stored(v, row) for v, row in zip(verdicts, rows, strict=True)]
        reply_ops = self._reply_ops(envelopes, verdicts, rows) if reply else None
        answers = await self.store.save_many(
            verdicts, self.verdict_ttl_s, bodies=bodies, before=writes.ops, after=reply_ops or ()
        )
        if not writes.confirmed(answers) and not again:
            SPECULATED.labels(result="redone").inc()
            log.warning("a chain of this batch changed between its dry and learning observe "
                        "calls; deciding the batch again from the stored answers")
            return await self._decide_and_save(envelopes, reply=reply, again=True)
        heard = answers[len(writes.ops):]
        return verdicts, rows, (heard if reply_ops is not None else None)

    def _reply_ops(
        self, envelopes: Sequence[IngestEnvelope], verdicts: Sequence[Verdict],
        rows: Sequence[list[Any]],
    ) -> list[Op] | None:
        """The replies of waiting callers as ops to send behind the save (None: none, or the
        sink publishes on its own — :meth:`_reply` after the save)."""
        if self.replies is None or not any(env.reply for env in envelopes):
            return None
        replies: list[tuple[str, bytes]] = []
        i = 0
        for env in envelopes:
            n = len(env.events)
            if env.reply:
                replies.append((env.reply, encode_compact(
                    env.project_id, env.agent_id, env.trace_id, env.received_at,
                    verdicts[i : i + n], rows[i : i + n])))
            i += n
        return self.replies.ops(replies)

    async def _decisions(self, verdicts: Sequence[Verdict]) -> list[Outgoing]:
        """Log (and audit, and optionally publish) non-allow verdicts and mode changes."""
        records = decision_records(verdicts)
        if not records:
            return []
        log_records(records)
        if self.audit is not None:
            for r in records:
                if r["kind"] == "mode_change":
                    try:
                        await self.audit.append(
                            r["project"], "chain.mode_changed", "system", f"chain:{r['chain']}",
                            {"agent": r["agent"], "mode": r["mode"], "change": r["change"],
                             "event_id": r["event_id"], "trace_id": r["trace_id"]},
                        )
                    except Exception:  # the verdicts stand; the log line above has the change
                        log.exception("could not audit the mode change of chain %s", r["chain"])
        if not self.decisions_topic:
            return []
        return [
            Outgoing(str(r["project"]).encode(), orjson.dumps(r), (), self.decisions_topic)
            for r in records
        ]

    async def _one_guarded(self, env: IngestEnvelope) -> tuple[list[Verdict], list[list[Any]]]:
        try:
            verdicts, rows, _ = await retry_unavailable(
                lambda: self._decide_and_save([env], reply=False), self.backoff,
                what="ingest envelope",
            )
            return verdicts, rows
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("envelope %s of agent %s failed; answering by on_error with error set",
                          env.trace_id, env.agent_id)
            WORKER_MESSAGES.labels(topic="ingest", result="error").inc()
            chosen = await self._on_error_choice(env.project_id)
            now = self.clock()
            msg = f"internal error: {type(exc).__name__}"
            verdicts = [
                error_verdict(ev, env.trace_id, msg, now, on_error_action(chosen, ev.priority))
                for ev in env.events
            ]
            for action, n in Counter(v.action for v in verdicts).items():
                ERROR_VERDICTS.labels(action=action).inc(n)
            rows = [verdict_row(v) for v in verdicts]
            bodies = [encode_stored(v, row) for v, row in zip(verdicts, rows, strict=True)]
            try:
                await retry_unavailable(
                    lambda: self.store.save_many(verdicts, self.verdict_ttl_s, bodies=bodies),
                    self.backoff, what="error verdicts",
                )
            except RatchetError:
                log.exception("could not save error verdicts")
            return verdicts, rows

    async def _on_error_choice(self, project_id: str) -> str | None:
        """The project's ``on_error`` (None: none chosen, or its policy cannot be read now)."""
        if self.policies is None:
            return None
        try:
            active = await self.policies.active({project_id})
            return active[project_id].policy.on_error
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("on_error of project %s unreadable; using the default by priority",
                          project_id)
            return None

    async def _reply(self, envelopes: Sequence[IngestEnvelope], out: Sequence[Outgoing]) -> None:
        """Hand the verdict envelopes of waiting callers to their gateways (``out[i]`` is the
        verdict message of ``envelopes[i]``). Best effort: the verdicts are saved already, so a
        caller whose reply is lost reads its verdict by lookup; the batch is never held up."""
        if self.replies is None:
            return
        replies = [(env.reply, out[i].value) for i, env in enumerate(envelopes) if env.reply]
        if not replies:
            return
        try:
            heard = await self.replies.publish(replies)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (a lost reply is answered by lookup)
            WORKER_REPLIES.labels(result="failed").inc(len(replies))
            log.warning("could not publish %d replies to waiting callers: %s",
                        len(replies), type(exc).__name__)
            return
        _count_replies(heard)

    def _emit(
        self, envelopes: Sequence[IngestEnvelope], verdicts: list[Verdict],
        rows: Sequence[list[Any]] | None = None,
    ) -> list[Outgoing]:
        """One compact verdict envelope (:mod:`models.verdict_wire`) per ingest envelope;
        ``rows``: the verdicts' rows, built already for the stored bytes."""
        out: list[Outgoing] = []
        now = self.clock()
        tally: Counter[tuple[str, str, str]] = Counter()
        i = 0
        for env in envelopes:
            n = len(env.events)
            for v in verdicts[i : i + n]:
                tally[(v.action, _source(v), v.mode)] += 1
            count_project_verdicts(env.project_id, [v.action for v in verdicts[i : i + n]])
            body = encode_compact(
                env.project_id, env.agent_id, env.trace_id, env.received_at, verdicts[i : i + n],
                None if rows is None else rows[i : i + n],
            )
            i += n
            out.append(
                Outgoing(
                    agent_key(env.project_id, env.agent_id),
                    body,
                    ((TRACE_HEADER, env.trace_id.encode()),),
                )
            )
            if env.received_at:
                INGEST_TO_VERDICT_SECONDS.observe(max(0.0, now - env.received_at))
        for (action, source, mode), n in tally.items():
            child(VERDICTS, action, source, mode).inc(n)
        return out


@dataclass
class FeedbackProcessor:
    """A human decision on a held event → the stored verdict → ``engine.feedback``."""

    engine: DecideEngine
    store: VerdictStoreLike
    backoff: Backoff = field(default_factory=Backoff)

    def decode(self, body: bytes) -> FeedbackMessage | None:
        try:
            return decode_feedback(body)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            WORKER_MESSAGES.labels(topic="feedback", result="invalid").inc()
            log.error("dropping an invalid feedback message: %s", exc)
            return None

    async def process(self, msg: FeedbackMessage) -> str:
        """Apply one decision; returns ``applied``, ``not_pending`` or ``unknown_event``."""
        result = await retry_unavailable(lambda: self._apply(msg), self.backoff, what="feedback")
        FEEDBACK.labels(decision=msg.decision, result=result).inc()
        WORKER_MESSAGES.labels(topic="feedback", result="ok").inc()
        return result

    async def _apply(self, msg: FeedbackMessage) -> str:
        verdict = await self.store.get(msg.project_id, msg.event_id)
        if verdict is None or not verdict.get("chain_tag"):
            log.warning("feedback for unknown or expired event %s (project %s) ignored",
                        msg.event_id, msg.project_id)
            return "unknown_event"
        result = await self.engine.feedback(
            str(verdict["chain_tag"]), str(verdict["run_id"]), msg.event_id, msg.decision,
            project_id=msg.project_id, agent_id=str(verdict.get("agent_id", "")),
        )
        return "applied" if getattr(result, "applied", False) else "not_pending"
