"""Kafka message bodies: envelopes of one agent's events, verdicts and feedback. Pure: no I/O.

Faust pays a large fixed cost per Kafka message, so the gateway groups a request's events into one
envelope per agent (docs/design.md §6) and workers answer with one verdict envelope per envelope.
The Kafka key is :func:`agent_key`, so one agent's events keep their order on one partition.

Ingest envelopes come in two wire versions, and :func:`decode_ingest` reads both (a rolling
upgrade mixes them): version 1 is JSON (``{"v":1,…,"events":[{…}]}``, :func:`encode_ingest`);
version 2, what gateways write by default (``RATCHET_INGEST_WIRE_VERSION``), is a positional
MessagePack array (:func:`encode_ingest_compact`), the project and agent once per envelope,
no field names, the priority as a small integer::

    [2, project_id, agent_id, trace_id, received_at, wait, reply, [row, ...]]
    row = [event_id, run_id, service, action, payload, priority, ts, cost, end_of_run, metadata]

``priority``: index into :data:`models.events.PRIORITIES`; ``ts``, ``cost``: nil when absent;
``metadata``: nil when empty. Payload and metadata keep their JSON types (MessagePack has
integers, floats, strings, booleans, nil, arrays and maps). A version-1 body starts with ``{``,
a version-2 body with a MessagePack array header. Workers write verdict envelopes in the compact format of
:mod:`models.verdict_wire` (version 2); the JSON verdict envelope here is version 1, still read.

>>> from models.events import parse_event
>>> ev = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "s",
...                   "action": "x", "payload": {}}, project_id="p")
>>> env = IngestEnvelope("p", "a", "t-1", 1.5, (ev,), wait=True, reply="gw1")
>>> decode_ingest(encode_ingest(env)) == env
True
>>> decode_ingest(encode_ingest_compact(env)) == env
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from models.errors import ValidationError
from models.events import PRIORITIES, IngestEvent, new_event, parse_event
from models.verdict import Verdict

__all__ = [
    "COMPACT_INGEST_VERSION",
    "ENVELOPE_VERSION",
    "TRACE_HEADER",
    "FeedbackMessage",
    "IngestEnvelope",
    "VerdictEnvelope",
    "agent_key",
    "decode_feedback",
    "decode_ingest",
    "decode_verdicts",
    "encode_feedback",
    "encode_ingest",
    "encode_ingest_compact",
    "encode_verdict_bodies",
    "encode_verdicts",
]

ENVELOPE_VERSION = 1
#: Version of the compact (MessagePack) ingest envelope.
COMPACT_INGEST_VERSION = 2
#: Kafka header carrying the trace id of the request that produced a message.
TRACE_HEADER = "trace_id"


def agent_key(project_id: str, agent_id: str) -> bytes:
    """Kafka key: one partition per (project, agent) keeps that agent's events in order."""
    return f"{project_id}/{agent_id}".encode()


@dataclass(frozen=True, slots=True)
class IngestEnvelope:
    project_id: str
    agent_id: str
    trace_id: str
    received_at: float
    events: tuple[IngestEvent, ...]
    #: True when a caller waits synchronously for these verdicts (latency-sensitive).
    wait: bool = False
    #: Reply route of the gateway instance the waiting caller is on (empty: nobody waits). The
    #: worker publishes this envelope's verdicts to that route as well as to ``verdicts``.
    reply: str = ""


@dataclass(frozen=True, slots=True)
class VerdictEnvelope:
    project_id: str
    agent_id: str
    trace_id: str
    verdicts: tuple[Verdict, ...]
    #: ``received_at`` of the ingest envelope, for ingest-to-verdict latency.
    received_at: float = 0.0


@dataclass(frozen=True, slots=True)
class FeedbackMessage:
    """A human decision on a paused event: ``approve`` (false positive) or ``reject``."""

    project_id: str
    event_id: str
    decision: str
    reason: str
    actor: str
    trace_id: str
    decided_at: float


def _loads(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict) or obj.get("v") != ENVELOPE_VERSION:
        raise ValidationError(f"{what} has an unknown envelope version")
    return obj


def encode_ingest(env: IngestEnvelope) -> bytes:
    obj: dict[str, Any] = {
        "v": ENVELOPE_VERSION,
        "project_id": env.project_id,
        "agent_id": env.agent_id,
        "trace_id": env.trace_id,
        "received_at": env.received_at,
        "wait": env.wait,
        "events": [e.to_dict() for e in env.events],
    }
    if env.reply:
        obj["reply"] = env.reply
    return orjson.dumps(obj)


def encode_ingest_compact(env: IngestEnvelope) -> bytes:
    """The version-2 (MessagePack) body of ``env`` (module docstring); the version-1 JSON body
    when an event does not fit its layout (another project or agent than the envelope's, an
    offline ``label``, a priority outside the set)."""
    rows = []
    for e in env.events:
        priority = _PRIORITY_INDEX.get(e.priority)
        if (e.project_id != env.project_id or e.agent_id != env.agent_id or e.label is not None
                or priority is None):
            return encode_ingest(env)
        rows.append((e.event_id, e.run_id, e.service, e.action, e.payload, priority, e.ts, e.cost,
                     e.end_of_run, e.metadata or None))
    try:
        return _compact_encoder.encode((COMPACT_INGEST_VERSION, env.project_id, env.agent_id,
                                        env.trace_id, env.received_at, env.wait, env.reply, rows))
    except (TypeError, ValueError, UnicodeError):  # a value MessagePack cannot carry
        return encode_ingest(env)


_compact_encoder = msgspec.msgpack.Encoder()
_PRIORITY_INDEX = {p: i for i, p in enumerate(PRIORITIES)}
_Row = tuple[str, str, str, str, dict[str, Any], int, float | None, float | None, bool,
             dict[str, Any] | None]
_compact_decoder = msgspec.msgpack.Decoder(
    tuple[int, str, str, str, float, bool, str, list[_Row]])


def _decode_compact(body: bytes) -> IngestEnvelope:
    try:
        version, project_id, agent_id, trace_id, received_at, wait, reply, rows = (
            _compact_decoder.decode(body))
    except msgspec.ValidationError as exc:
        head = msgspec.msgpack.decode(body)  # a readable body of another layout: which version?
        if isinstance(head, list) and head and head[0] != COMPACT_INGEST_VERSION:
            raise ValidationError(f"ingest envelope has an unknown wire version {head[0]!r}") \
                from None
        raise ValidationError(f"ingest envelope (version 2) is malformed: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ValidationError(f"ingest envelope is neither JSON nor MessagePack: {exc}") from None
    if version != COMPACT_INGEST_VERSION:
        raise ValidationError(f"ingest envelope has an unknown wire version {version!r}")
    events = []
    for event_id, run_id, service, action, payload, priority, ts, cost, end_of_run, meta in rows:
        if not 0 <= priority < len(PRIORITIES):
            raise ValidationError(f"ingest envelope has an unknown priority {priority}")
        events.append(new_event(event_id, agent_id, run_id, service, action, payload,
                                project_id, PRIORITIES[priority], ts, cost, end_of_run,
                                meta or {}, None))
    return IngestEnvelope(project_id, agent_id, trace_id, received_at, tuple(events), wait=wait,
                          reply=reply)


def decode_ingest(body: bytes) -> IngestEnvelope:
    """An ingest envelope of either wire version (module docstring); :class:`ValidationError`
    for anything else."""
    if body[:1] != b"{":
        return _decode_compact(body)
    obj = _loads(body, "ingest envelope")
    project_id = obj["project_id"]
    events = tuple(
        parse_event(e, project_id, allow_offline_fields=True) for e in obj.get("events", [])
    )
    return IngestEnvelope(
        project_id=project_id,
        agent_id=obj["agent_id"],
        trace_id=obj.get("trace_id", ""),
        received_at=float(obj.get("received_at", 0.0)),
        events=events,
        wait=bool(obj.get("wait", False)),
        reply=str(obj.get("reply", "")),
    )


def encode_verdicts(env: VerdictEnvelope) -> bytes:
    return encode_verdict_bodies(
        env.project_id, env.agent_id, env.trace_id, env.received_at,
        [orjson.dumps(v.to_dict()) for v in env.verdicts],
    )


def encode_verdict_bodies(
    project_id: str, agent_id: str, trace_id: str, received_at: float, bodies: Sequence[bytes]
) -> bytes:
    """A verdict envelope from verdicts already encoded as JSON objects (``orjson.dumps``).

    The worker encodes each verdict once, stores those bytes in Redis and splices the same bytes
    into the envelope here, instead of serializing every verdict twice.

    >>> encode_verdict_bodies("p", "a", "t", 1.5, [b'{"event_id":"e1"}', b'{"event_id":"e2"}'])
    b'{"v":1,"project_id":"p","agent_id":"a","trace_id":"t","received_at":1.5,"verdicts":[{"event_id":"e1"},{"event_id":"e2"}]}'
    """
    head = orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "project_id": project_id,
            "agent_id": agent_id,
            "trace_id": trace_id,
            "received_at": received_at,
        }
    )
    return b"".join((head[:-1], b',"verdicts":[', b",".join(bodies), b"]}"))


def decode_verdicts(body: bytes) -> VerdictEnvelope:
    """A JSON (version 1) verdict envelope; readers of the ``verdicts`` topic use
    :func:`models.verdict_wire.decode_verdict_message`, which also reads the compact format."""
    obj = _loads(body, "verdict envelope")
    return VerdictEnvelope(
        project_id=obj["project_id"],
        agent_id=obj["agent_id"],
        trace_id=obj.get("trace_id", ""),
        verdicts=tuple(Verdict.from_dict(v) for v in obj.get("verdicts", [])),
        received_at=float(obj.get("received_at", 0.0)),
    )


def encode_feedback(msg: FeedbackMessage) -> bytes:
    return orjson.dumps(
        {
            "v": ENVELOPE_VERSION,
            "project_id": msg.project_id,
            "event_id": msg.event_id,
            "decision": msg.decision,
            "reason": msg.reason,
            "actor": msg.actor,
            "trace_id": msg.trace_id,
            "decided_at": msg.decided_at,
        }
    )


def decode_feedback(body: bytes) -> FeedbackMessage:
    obj = _loads(body, "feedback message")
    decision = obj.get("decision")
    if decision not in ("approve", "reject"):
        raise ValidationError("decision must be approve or reject", "decision")
    return FeedbackMessage(
        project_id=obj["project_id"],
        event_id=obj["event_id"],
        decision=decision,
        reason=obj.get("reason", ""),
        actor=obj.get("actor", ""),
        trace_id=obj.get("trace_id", ""),
        decided_at=float(obj.get("decided_at", 0.0)),
    )
