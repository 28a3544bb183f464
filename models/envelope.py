"""Kafka message bodies: envelopes of one agent's events, verdicts and feedback. Pure: no I/O.

Faust pays a large fixed cost per Kafka message, so the gateway groups a request's events into one
envelope per agent (DESIGN.md §6) and workers answer with one verdict envelope per envelope.
Bodies are JSON (orjson); the Kafka key is :func:`agent_key`, so one agent's events keep their
order on one partition. Workers write verdict envelopes in the compact format of
:mod:`models.verdict_wire` (version 2); the JSON verdict envelope here is version 1, still read.

>>> from models.events import parse_event
>>> ev = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "s",
...                   "action": "x", "payload": {}}, project_id="p")
>>> env = IngestEnvelope("p", "a", "t-1", 1.5, (ev,), wait=True, reply="gw1")
>>> decode_ingest(encode_ingest(env)) == env
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.errors import ValidationError
from models.events import IngestEvent, parse_event
from models.verdict import Verdict

__all__ = [
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
    "encode_verdict_bodies",
    "encode_verdicts",
]

ENVELOPE_VERSION = 1
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


def decode_ingest(body: bytes) -> IngestEnvelope:
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
