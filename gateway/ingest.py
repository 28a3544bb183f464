"""Checking ingest events and packing the accepted ones into one envelope per agent.

Pure apart from the agent secrets it is handed: handlers look the secrets up (one Redis round
trip per request) and publish what :func:`envelopes` returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.auth import verify_event
from models.envelope import IngestEnvelope, agent_key, encode_ingest
from models.events import IngestEvent, parse_event
from ratchet.errors import AuthError, RatchetError, ValidationError

__all__ = ["Checked", "check_signatures", "envelopes", "error_body", "parse_batch"]

#: Per-event fields of a batch item that carry its signature; they are not part of the event.
SIGNATURE_FIELD = "signature"
TIMESTAMP_FIELD = "timestamp"


@dataclass
class Checked:
    """One batch item: its event once parsed, or the error that rejected it."""

    index: int
    raw: Any
    event: IngestEvent | None = None
    error: RatchetError | None = None

    def result(self) -> dict[str, Any]:
        event_id = self.event.event_id if self.event else _raw_event_id(self.raw)
        if self.error is None:
            return {"index": self.index, "event_id": event_id, "status": "accepted"}
        return {
            "index": self.index,
            "event_id": event_id,
            "status": "rejected",
            "error": error_body(self.error),
        }


def _raw_event_id(raw: Any) -> str | None:
    value = raw.get("event_id") if isinstance(raw, dict) else None
    return value if isinstance(value, str) and len(value) <= 128 else None


def error_body(exc: RatchetError) -> dict[str, Any]:
    """The JSON error object of every error answer: ``{error, field, message}``."""
    if isinstance(exc, ValidationError):
        return dict(exc.as_dict())
    code = {401: "unauthorized", 404: "not_found", 409: "conflict", 429: "rate_limited",
            503: "unavailable"}
    return {"error": code.get(exc.status, "internal"), "field": None, "message": str(exc)}


def parse_batch(body: Any, project_id: str, max_events: int) -> list[Checked]:
    """Validate ``{"events": [...]}``; the whole request is 400 only if the list itself is bad."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {\"events\": [...]}", None)
    events = body.get("events")
    if not isinstance(events, list):
        raise ValidationError("events must be a list of event objects", "events")
    if not 1 <= len(events) <= max_events:
        raise ValidationError(f"events must hold 1 to {max_events} events", "events")
    out: list[Checked] = []
    seen: set[str] = set()
    for i, raw in enumerate(events):
        item = Checked(i, raw)
        try:
            item.event = parse_event(raw, project_id)
            if item.event.event_id in seen:
                raise ValidationError("event_id appears twice in this batch", "event_id")
            seen.add(item.event.event_id)
        except ValidationError as exc:
            item.event = None
            item.error = ValidationError(str(exc), f"events[{i}].{exc.field}" if exc.field else
                                         f"events[{i}]")
        out.append(item)
    return out


def check_signatures(
    items: Sequence[Checked], secrets: Mapping[str, str], *, now: float, window_s: int
) -> None:
    """Reject (in place) the parsed items whose in-body signature does not verify."""
    for item in items:
        if item.event is None:
            continue
        try:
            verify_event(
                item.event, secrets, item.raw.get(SIGNATURE_FIELD), item.raw.get(TIMESTAMP_FIELD),
                now=now, window_s=window_s,
            )
        except AuthError as exc:
            item.error = exc


def envelopes(
    events: Sequence[IngestEvent],
    project_id: str,
    trace_id: str,
    received_at: float,
    *,
    wait: bool = False,
) -> list[tuple[bytes, bytes, list[IngestEvent]]]:
    """``(kafka key, body, events)`` per agent, events in request order within each agent."""
    by_agent: dict[str, list[IngestEvent]] = {}
    for ev in events:
        by_agent.setdefault(ev.agent_id, []).append(ev)
    out = []
    for agent_id, evs in by_agent.items():
        env = IngestEnvelope(project_id, agent_id, trace_id, received_at, tuple(evs), wait=wait)
        out.append((agent_key(project_id, agent_id), encode_ingest(env), evs))
    return out
