"""Checking ingest events and packing the accepted ones into one envelope per agent.

Pure apart from the agent secrets it is handed: handlers look the secrets up (one Redis round
trip per request) and publish what :func:`envelopes` returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.auth import verify_event
from models.envelope import (
    COMPACT_INGEST_VERSION,
    IngestEnvelope,
    agent_key,
    encode_ingest,
    encode_ingest_compact,
)
from models.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    RatchetError,
    TooLargeError,
    ValidationError,
    error_code,
)
from models.events import DEFAULT_LIMITS, IngestEvent, Limits, Size
from models.ingest_schema import decode_counted
from models.known_fields import refuse_unknown_fields
from models.ratelimit import envelope_tokens, event_tokens
from models.sanitize import clean_text, is_display_safe, shown
from models.signing import signature_matches
from ratchet.config.settings import Settings

__all__ = [
    "Checked",
    "check_signatures",
    "check_timestamp",
    "envelopes",
    "error_body",
    "ingest_limits",
    "other_agent_error",
    "parse_batch",
    "refuse_reused_ids",
    "reused_id_error",
]

#: Per-event fields of a batch item that carry its signature; they are not part of the event.
SIGNATURE_FIELD = "signature"
TIMESTAMP_FIELD = "timestamp"


#: The size of an item refused before it was counted (its tokens: one).
_NOTHING = Size(0, 0, 0)


@dataclass(slots=True)
class Checked:
    """One batch item: its event once parsed, or the error that rejected it."""

    index: int
    raw: Any
    event: IngestEvent | None = None
    error: RatchetError | None = None
    #: The bytes its v2 signature covers, when parsing produced them (else the check does).
    signing: bytes | None = None
    #: The JSON values, object keys and characters it carries (its ingest tokens:
    #: models.ratelimit.event_tokens).
    size: Size = _NOTHING

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
    """The event id of an item that did not parse, as sent if it is safe to show, else cleaned."""
    value = raw.get("event_id") if isinstance(raw, dict) else None
    if not isinstance(value, str):
        return None
    return value if len(value) <= 128 and is_display_safe(value) else clean_text(value, 128)


def other_agent_error(agent_id: str, field: str = "agent_id") -> ForbiddenError:
    """An ingest key bound to ``agent_id`` sent another agent's event (``field``: where it
    names the agent, ``events[i].agent_id`` in a batch)."""
    return ForbiddenError(f"this ingest key sends events of agent {shown(agent_id)} only; use that "
                          "agent's key (or a project ingest key)", field)


def error_body(exc: RatchetError) -> dict[str, Any]:
    """The JSON error object of every error answer: ``{error, field, message}``. ``field`` can
    hold client keys (``payload.<key>``), so it is cleaned for display."""
    if isinstance(exc, ValidationError):
        out = dict(exc.as_dict())
    else:
        out = {"error": error_code(exc.status), "field": getattr(exc, "field", None),
               "message": str(exc)}
    if out["field"] is not None:
        out["field"] = clean_text(str(out["field"]), 200)
    return out


def ingest_limits(settings: Settings) -> Limits:
    """The shape limits of ingest events in this configuration."""
    return Limits(
        max_payload_depth=settings.max_payload_depth,
        max_payload_keys=settings.max_payload_keys,
        max_payload_values=settings.max_payload_values,
        max_batch_values=settings.max_batch_values,
        max_metadata_bytes=settings.max_metadata_bytes,
        max_metadata_keys=settings.max_metadata_keys,
        max_metadata_depth=settings.max_metadata_depth,
    )


def parse_batch(
    body: Any, project_id: str, max_events: int, limits: Limits = DEFAULT_LIMITS
) -> list[Checked]:
    """Validate ``{"events": [...]}``; the whole request is 400 only if the list itself is bad.

    The events' JSON values (payload, metadata, unknown fields) count against one budget of
    ``limits.max_batch_values`` per request: the event that overdraws it and every one after it
    are rejected (413 naming ``events[i]``; nothing after it is even walked), the ones before it
    are checked as usual."""
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {\"events\": [...]}", None)
    refuse_unknown_fields(body, ("events",))
    events = body.get("events")
    if not isinstance(events, list):
        raise ValidationError("events must be a list of event objects", "events")
    if not 1 <= len(events) <= max_events:
        raise ValidationError(f"events must hold 1 to {max_events} events", "events")
    out: list[Checked] = []
    seen: set[str] = set()
    left = limits.max_batch_values
    for i, raw in enumerate(events):
        if left < 0:  # the budget is spent: refused without a look
            out.append(Checked(i, raw, error=_over_budget(i, limits)))
            continue
        try:
            event, signing, size = decode_counted(raw, project_id, limits)
            left -= size.values
            if left < 0:
                out.append(Checked(i, raw, error=_over_budget(i, limits)))
                continue
            if event.event_id in seen:
                raise ValidationError("event_id appears twice in this batch", "event_id")
            seen.add(event.event_id)
        except ValidationError as exc:
            out.append(Checked(i, raw, error=ValidationError(
                str(exc), f"events[{i}].{exc.field}" if exc.field else f"events[{i}]")))
        else:
            out.append(Checked(i, raw, event, None, signing, size))
    return out


def batch_charge(items: Sequence[Checked]) -> tuple[int, int]:
    """``(tokens, envelope tokens)`` of a batch. Its ingest tokens: each item's (one for an item
    refused before it was counted), and :data:`models.ratelimit.AGENT_ENVELOPE_TOKENS` for each
    agent after the first (one envelope each) — those envelope tokens, which its project's
    spread bucket must hold too (models/ratelimit.py ``SPREAD_BURST_S``), apart."""
    envelope = envelope_tokens(len({it.event.agent_id for it in items if it.event is not None}))
    return sum(event_tokens(*it.size) for it in items) + envelope, envelope


def _over_budget(index: int, limits: Limits) -> TooLargeError:
    return TooLargeError(
        f"this batch holds more than {limits.max_batch_values} JSON values in all (payloads, "
        f"metadata and other fields of its events together); send events[{index}] and the "
        "events after it in another request", f"events[{index}]")


def check_timestamp(raw: Any, field: str) -> None:
    """400 naming ``field`` unless a signature timestamp is absent (then the signature check
    answers 401 "missing") or Unix seconds: an integer, or 1–12 ASCII digits — never judged by
    ``str.isdigit``, which takes ``²``."""
    if raw is None or raw == "" or (isinstance(raw, int) and not isinstance(raw, bool)):
        return
    text = raw.strip() if isinstance(raw, str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise ValidationError(f"{field} must be Unix seconds (an integer of at most 12 ASCII "
                              "digits)", field)


def check_signatures(
    items: Sequence[Checked], secrets: Mapping[str, str], *, now: float, window_s: int,
    v1_until: str = "",
) -> None:
    """Reject (in place) the parsed, not yet rejected items whose in-body signature does not
    verify (a malformed timestamp is a 400 naming it, a bad signature a 401).

    An item whose signing bytes parsing already produced, with an integer timestamp inside the
    window, a ``v2=`` signature and a known agent, is accepted when the HMAC matches; any other
    item, and one that does not match, takes the full check, which gives the refusal."""
    for item in items:
        event = item.event
        if event is None or item.error is not None:
            continue
        message = item.signing
        if message is not None:
            raw = item.raw
            signature, ts = raw.get(SIGNATURE_FIELD), raw.get(TIMESTAMP_FIELD)
            secret = secrets.get(event.agent_id)
            if (secret is not None and type(signature) is str and type(ts) is int
                    and abs(now - ts) <= window_s
                    and signature_matches(secret, message, signature)):
                continue
        try:
            check_timestamp(item.raw.get(TIMESTAMP_FIELD), f"events[{item.index}].timestamp")
            verify_event(
                event, item.raw, secrets, item.raw.get(SIGNATURE_FIELD),
                item.raw.get(TIMESTAMP_FIELD), now=now, window_s=window_s, v1_until=v1_until,
            )
        except (AuthError, ValidationError) as exc:
            item.error = exc


def refuse_reused_ids(items: Sequence[Checked], fresh: Sequence[bool]) -> None:
    """Reject (in place) the still-good items whose event id is bound to another body;
    ``fresh`` answers :meth:`ratchet.store.idempotency.EventIds.claim` for those items, in order."""
    good = [it for it in items if it.error is None and it.event is not None]
    for item, ok in zip(good, fresh, strict=True):
        if not ok:
            item.error = reused_id_error(f"events[{item.index}].event_id")


def reused_id_error(field: str) -> ConflictError:
    return ConflictError(
        "event_id was already used in this project for a different event (by another agent, or "
        "its run, service, action, payload or another field differ); event ids are unique per "
        "project: retry with the same body or use a new event id",
        field)


def envelopes(
    events: Sequence[IngestEvent],
    project_id: str,
    trace_id: str,
    received_at: float,
    *,
    wait: bool = False,
    reply: str = "",
    wire_version: int = COMPACT_INGEST_VERSION,
) -> list[tuple[bytes, bytes, list[IngestEvent]]]:
    """``(kafka key, body, events)`` per agent, events in request order within each agent;
    ``reply``: the reply route of this gateway when a caller waits for the verdicts;
    ``wire_version``: 2 compact, 1 JSON (:mod:`models.envelope`)."""
    encode = encode_ingest_compact if wire_version == COMPACT_INGEST_VERSION else encode_ingest
    by_agent: dict[str, list[IngestEvent]] = {}
    for ev in events:
        by_agent.setdefault(ev.agent_id, []).append(ev)
    out = []
    for agent_id, evs in by_agent.items():
        env = IngestEnvelope(project_id, agent_id, trace_id, received_at, tuple(evs), wait=wait,
                             reply=reply)
        out.append((agent_key(project_id, agent_id), encode(env), evs))
    return out
