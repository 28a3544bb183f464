"""The ingest event as a msgspec schema: the gateway's fast, schema-driven check of each event.

:func:`decode_event` gives exactly what :func:`models.events.parse_event` gives (same event, same
error), about three times faster on good input: the types, lengths, ranges and the priority set
of every field are checked by msgspec's C validator against :class:`EventSchema`; what a schema
cannot say — no display-unsafe characters in the identifier fields, the nesting, key-count and
number limits inside ``payload`` and ``metadata``, the metadata size — is checked by one regex
search and one iterative walk each. Bad input is rare, so it is not worth a second set of
messages: whenever the fast check refuses an event, :func:`parse_event` walks it again and
raises its error, which names the field (``event_id must be 1 to 128 characters``) and is the
one the API documents. ``tests/unit/test_ingest_schema.py`` checks the two agree on generated
events, good and bad.

The schema is built for the default identifier and number limits (:data:`DEFAULT_LIMITS`); with
other such limits every event takes :func:`parse_event` (payload and metadata limits, the ones
settings change, are checked by the fast path with whatever limits it is handed).

>>> e = decode_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
...                   "action": "contacts.read", "payload": {"id": 1}}, "p")
>>> (e.event_id, e.priority, e.ts)
('e1', 'normal', None)
>>> decode_event({"event_id": "", "agent_id": "a"}, "p")
Traceback (most recent call last):
...
models.errors.ValidationError: event_id must be 1 to 128 characters
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
import orjson

from models.errors import ValidationError
from models.events import (
    DEFAULT_LIMITS,
    DOT_IDS,
    IngestEvent,
    Limits,
    Size,
    check_other_fields,
    metadata_values_cap,
    new_event,
    parse_event_counted,
    shape_of,
)
from models.jcs import MAX_SAFE_INTEGER, plain_float
from models.sanitize import UNSAFE_CLASS

__all__ = ["EventSchema", "decode_counted", "decode_event", "decode_signed_event"]

_D = DEFAULT_LIMITS

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=_D.max_id_chars)]
_RunId = Annotated[str, msgspec.Meta(min_length=1, max_length=_D.max_run_id_chars)]
_Action = Annotated[str, msgspec.Meta(min_length=1, max_length=_D.max_action_chars)]
_Number = Annotated[float, msgspec.Meta(ge=-_D.max_abs_number, le=_D.max_abs_number)]
_Cost = Annotated[float, msgspec.Meta(ge=0, le=_D.max_abs_number)]


class EventSchema(msgspec.Struct, frozen=True, gc=False):
    """The fields of an ingest event the gateway reads, with their types and limits (unknown
    fields are allowed: they are signed as sent and otherwise ignored).

    ``payload`` is any value here and :func:`decode_signed_event` requires a ``dict`` itself: a
    ``dict[str, Any]`` field makes msgspec build a copy of every payload (≈ 0.4 µs an event)
    that nothing reads. Not tracked by the garbage collector (``gc=False``): it lives for one
    event and holds no cycle."""

    event_id: _Id
    agent_id: _Id
    run_id: _RunId
    service: _Id
    action: _Action
    payload: Any
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    ts: _Number | None = None
    cost: _Cost | None = None
    end_of_run: bool = False
    metadata: dict[str, Any] | None = None


#: Any display-unsafe character (models.sanitize); the identifier fields are searched at once.
_UNSAFE = re.compile(UNSAFE_CLASS)
_SCHEMA_LIMITS = (_D.max_id_chars, _D.max_run_id_chars, _D.max_action_chars, _D.max_abs_number)


def _display_safe(text: str) -> bool:
    """No character of :data:`models.sanitize.UNSAFE_CLASS` in ``text``. Its ASCII members are
    the controls (U+0000–U+001F, U+007F: exactly the ASCII characters ``str.isprintable``
    refuses), ``<`` and ``>``, so ASCII text needs no regex (≈ 0.15 µs against 0.45)."""
    if text.isascii():
        return text.isprintable() and "<" not in text and ">" not in text
    return _UNSAFE.search(text) is None


#: The last limits found to fit the schema: a batch hands the same object for all its events.
_fitting: list[Limits] = [DEFAULT_LIMITS]


def _fits_schema(limits: Limits) -> bool:
    """Whether the schema checks ``limits``' identifier and number limits (one comparison per
    batch, not per event)."""
    if limits is _fitting[0]:
        return True
    if (limits.max_id_chars, limits.max_run_id_chars, limits.max_action_chars,
            limits.max_abs_number) != _SCHEMA_LIMITS:
        return False
    _fitting[0] = limits
    return True


def decode_event(obj: Any, project_id: str, limits: Limits = DEFAULT_LIMITS) -> IngestEvent:
    """The event in ``obj`` (one decoded JSON event of the caller's project), or the
    :class:`~models.errors.ValidationError` :func:`parse_event` raises for it."""
    return decode_signed_event(obj, project_id, limits, signed=False)[0]


def decode_signed_event(
    obj: Any, project_id: str, limits: Limits = DEFAULT_LIMITS, *, signed: bool = True
) -> tuple[IngestEvent, bytes | None]:
    """:func:`decode_event`, and the bytes signature v2 signs for a batch item (``obj`` with its
    ``signature`` and an integer ``timestamp``; :func:`models.signing.signing_bytes`) when they
    come cheaply — else ``None`` and the signature check computes them."""
    event, body, _ = decode_counted(obj, project_id, limits, signed=signed)
    return event, body


def decode_counted(
    obj: Any, project_id: str, limits: Limits = DEFAULT_LIMITS, *, signed: bool = True
) -> tuple[IngestEvent, bytes | None, Size]:
    """:func:`decode_signed_event` and the event's :class:`~models.events.Size` (JSON values
    of its payload, metadata and unknown fields: what a batch's value budget counts; object
    keys and characters of its payload and metadata; all three: its ingest tokens,
    :func:`models.ratelimit.event_tokens`).

    The payload walk that checks the limits (values, keys, depth, numbers: before any
    canonicalisation) also tells whether every float in it prints the
    same in orjson and RFC 8785 (:func:`models.jcs.plain_float`; integers are within the
    limits, far inside JCS's ±2**53), so the item's RFC 8785 bytes are orjson's sorted bytes of
    the signed object when, besides, those bytes are ASCII (every key ASCII), the item has
    only known fields and no metadata, and its ``ts`` and ``cost`` are plain too. No second walk
    (:func:`models.jcs.jcs`) and no second serialization for the signature check.
    """
    if type(obj) is not dict or (limits is not _fitting[0] and not _fits_schema(limits)):
        return _slow(obj, project_id, limits)
    try:
        s = msgspec.convert(obj, EventSchema)
    except msgspec.ValidationError:
        return _slow(obj, project_id, limits)  # raises, naming the field
    # a space is display-safe, so it cannot join two halves into an unsafe character
    ids = f"{s.event_id} {s.agent_id} {s.run_id} {s.service} {s.action}"
    if not _display_safe(ids) or s.event_id in DOT_IDS:
        return _slow(obj, project_id, limits)
    payload = s.payload
    if type(payload) is not dict:  # the reference names what is wrong with it
        return _slow(obj, project_id, limits)
    metadata = obj.get("metadata") or {}
    known = obj.keys() <= _SIGNED_FIELDS
    try:
        plain, values, keys, chars = shape_of(payload, "payload", limits.max_payload_depth,
                                              limits.max_payload_keys, limits.max_payload_values,
                                              limits)
        if metadata:
            meta = shape_of(metadata, "metadata", limits.max_metadata_depth,
                            limits.max_metadata_keys, metadata_values_cap(limits), limits)
            values += meta.values
            keys += meta.keys
            chars += meta.chars
            if len(orjson.dumps(metadata)) > limits.max_metadata_bytes:
                return _slow(obj, project_id, limits)  # raises: too large
        if not known:
            values += check_other_fields(obj, limits)
    except ValidationError:  # the full walk gives the documented error
        return _slow(obj, project_id, limits)
    body = None
    if (signed and plain and not metadata and type(ts := obj.get(_TIMESTAMP)) is int
            and -MAX_SAFE_INTEGER <= ts <= MAX_SAFE_INTEGER
            and known
            and (type(t := obj.get("ts")) is not float or plain_float(t))
            and (type(c := obj.get("cost")) is not float or plain_float(c))):
        body = _signing_bytes(obj, project_id)
    event = new_event(s.event_id, s.agent_id, s.run_id, s.service, s.action, payload,
                      project_id, s.priority, s.ts, s.cost, s.end_of_run, metadata, None)
    return event, body, Size(values, keys, chars)


def _slow(obj: Any, project_id: str, limits: Limits) -> tuple[IngestEvent, None, Size]:
    """The reference check (:func:`models.events.parse_event`): its error, or its event."""
    event, size = parse_event_counted(obj, project_id, limits=limits)
    return event, None, size


_TIMESTAMP = "timestamp"
_SIGNATURE = "signature"


#: The fields a batch item may have for :func:`_signing_bytes` (any other: the full check).
_SIGNED_FIELDS = frozenset(f for f in EventSchema.__struct_fields__) | {
    _TIMESTAMP, _SIGNATURE, "project_id"}


def _signing_bytes(obj: dict[str, Any], project_id: str) -> bytes | None:
    """orjson's sorted bytes of the object v2 signs (:func:`models.signing.signed_object`) of a
    batch item already found plain (:func:`decode_signed_event`), or ``None`` when a byte is
    not ASCII (a key might sort differently in RFC 8785)."""
    signed = dict(obj)
    signed.pop(_SIGNATURE, None)
    signed["project_id"] = project_id
    try:
        out = orjson.dumps(signed, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # e.g. a timestamp beyond 64 bits: the full check refuses it
        return None
    return out if out.isascii() else None
