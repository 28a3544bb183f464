"""Ingest events (docs/design.md §2): the record and its validation. Pure: no I/O.

>>> e = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
...                  "action": "contacts.read", "payload": {"id": 1}}, project_id="p")
>>> (e.priority, e.end_of_run, e.project_id)
('normal', False, 'p')
>>> parse_event({"event_id": "e1"}, project_id="p")
Traceback (most recent call last):
...
models.errors.ValidationError: agent_id is required
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from models.errors import ValidationError
from models.jcs import plain_float
from models.sanitize import clean_text, display_problem, shown

__all__ = [
    "DEFAULT_LIMITS",
    "KNOWN_FIELDS",
    "PRIORITIES",
    "IngestEvent",
    "Limits",
    "Shape",
    "Size",
    "check_other_fields",
    "check_shape",
    "json_depth",
    "json_key_count",
    "json_value_count",
    "metadata_values_cap",
    "new_event",
    "parse_event",
    "parse_event_counted",
    "shape_of",
]

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")


@dataclass(frozen=True, slots=True)
class Limits:
    """Shape limits on client input (docs/design.md §5)."""

    max_id_chars: int = 128
    max_run_id_chars: int = 256
    max_action_chars: int = 256
    max_payload_depth: int = 16
    max_payload_keys: int = 5_000
    #: JSON values inside ``payload`` — every member value and array element at every depth,
    #: containers and scalars alike. The key cap alone left arrays free: one signed
    #: ``{"q": [0] * 1_900_000}`` (3.8 MB) cost the gateway ≈ 0.9 s and the worker seconds.
    #: 10,000 is twice the key cap (a payload at the key cap, each key holding a scalar or a
    #: small container, still fits) and ≈ 180x the largest payload of the synthetic traffic.
    max_payload_values: int = 10_000
    #: JSON values of all the events of one batch request together (payload, metadata and
    #: unknown fields): bounds the work one request costs however its events are cut.
    max_batch_values: int = 200_000
    max_metadata_bytes: int = 10 * 1024
    max_metadata_keys: int = 50
    max_metadata_depth: int = 3
    max_abs_number: float = 1e15


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class IngestEvent:
    event_id: str
    agent_id: str
    run_id: str
    service: str
    action: str
    payload: Mapping[str, Any]
    project_id: str
    priority: str = "normal"
    ts: float | None = None
    cost: float | None = None
    end_of_run: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Offline replay only: ground truth (True = anomalous) for precision/recall.
    label: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "service": self.service,
            "action": self.action,
            "priority": self.priority,
            "payload": self.payload,
            "project_id": self.project_id,
            "end_of_run": self.end_of_run,
        }
        if self.ts is not None:
            out["ts"] = self.ts
        if self.cost is not None:
            out["cost"] = self.cost
        if self.metadata:
            out["metadata"] = self.metadata
        if self.label is not None:
            out["label"] = self.label
        return out


#: Ids no URL can carry as a path segment: clients resolve ``.`` and ``..`` (even as ``%2E``,
#: per the WHATWG URL standard) as dot segments, so ``GET /v1/verdicts/..`` never reaches its
#: event. The event id is refused at ingest instead (Dec 4 attack run, round 6).
DOT_IDS = frozenset({".", ".."})


def _string(obj: Mapping[str, Any], name: str, max_chars: int, *, required: bool = True) -> str:
    value = obj.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", name)
        return ""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, got {type(value).__name__}", name)
    if not value or len(value) > max_chars:
        raise ValidationError(f"{name} must be 1 to {max_chars} characters", name)
    problem = display_problem(value)
    if problem:
        raise ValidationError(f"{name} must not contain {problem}", name)
    return value


def _number(obj: Mapping[str, Any], name: str, limits: Limits) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number, got {type(value).__name__}", name)
    if _bad_number(value, limits):
        raise ValidationError(
            f"{name} must be a finite number of magnitude <= {_number_limit(limits)}", name
        )
    return float(value)


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value: a scalar is 0, ``{}`` is 1, ``{"a": {}}`` is 2.

    Iterative, so hostile nesting cannot exhaust the interpreter's stack.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level + 1)
            stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def json_key_count(value: Any) -> int:
    """Number of object keys anywhere inside a JSON value (iterative)."""
    count = 0
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(c for c in node.values() if isinstance(c, (dict, list)))
        elif isinstance(node, list):
            stack.extend(c for c in node if isinstance(c, (dict, list)))
    return count


def json_value_count(value: Any, cap: int | None = None) -> int:
    """Number of JSON values inside ``value`` (member values and array elements at every
    depth; the value itself not counted); iterative. With ``cap``, stops as soon as the count
    passes it (the result is then some number above ``cap``).

    >>> json_value_count({"a": [1, 2, {"b": None}], "c": "x"})
    6
    """
    count = 0
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        children = node.values() if type(node) is dict else node
        count += len(children)
        if cap is not None and count > cap:
            return count
        stack.extend(c for c in children if type(c) is dict or type(c) is list)
    return count


#: Every field of an event the gateway knows (read, or bound into the signature); any other
#: field is signed as sent and otherwise ignored (``label`` too, outside offline replay).
KNOWN_FIELDS = frozenset({
    "event_id", "agent_id", "run_id", "service", "action", "payload", "priority", "ts", "cost",
    "end_of_run", "metadata", "project_id", "signature", "timestamp",
})
_OFFLINE_FIELDS = KNOWN_FIELDS | {"label"}


def check_other_fields(
    obj: Mapping[str, Any], limits: Limits, known: frozenset[str] = KNOWN_FIELDS
) -> int:
    """Refuse an event whose unknown fields (not in :data:`KNOWN_FIELDS`) hold more than
    ``limits.max_payload_values`` JSON values together (each field's value counts as one, and
    every value inside it): they are never scored, but the signature check canonicalises them.
    Returns how many they hold."""
    cap = limits.max_payload_values
    total = 0
    for name, value in obj.items():
        if name in known:
            continue
        total += 1
        if type(value) is dict or type(value) is list:
            total += json_value_count(value, cap - total)
        if total > cap:
            field = clean_text(str(name), 100)
            raise ValidationError(
                f"the fields other than payload and metadata hold more than {cap} JSON values "
                f"together (from {field} on); unknown fields are signed but not used", field)
    return total


#: A path inside a JSON value, built only when an error needs it: ``(parent, key or index)``.
_Path = tuple[Any, str | int] | str


def _path_text(path: _Path) -> str:
    parts: list[str] = []
    while not isinstance(path, str):
        path, step = path
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return path + "".join(reversed(parts))


def _number_limit(limits: Limits) -> str:
    return f"{limits.max_abs_number:g}".replace("e+", "e")


def _bad_number(value: Any, limits: Limits) -> str | None:
    """What is wrong with a number (``None`` for anything else, or a number in range)."""
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            return "must be a finite number"
    elif kind is not int:
        return None
    if abs(value) > limits.max_abs_number:
        return f"is a number too large (limit {_number_limit(limits)})"
    return None


class Shape(NamedTuple):
    """What :func:`shape_of` found: whether every float is plain, how many values, how many
    of them are object members (keys), and how many characters its strings and keys hold."""

    plain: bool
    values: int
    keys: int = 0
    chars: int = 0


class Size(NamedTuple):
    """How much an event carries, as its ingest tokens count it
    (:func:`models.ratelimit.event_tokens`): JSON values of its payload, metadata and unknown
    fields; object keys and characters of strings and keys in its payload and metadata."""

    values: int
    keys: int
    chars: int


def shape_of(
    value: Any, name: str, max_depth: int, max_keys: int, max_values: int, limits: Limits
) -> Shape:
    """Refuse ``value`` (the field ``name``) if it nests deeper than ``max_depth``, holds more
    than ``max_keys`` object keys or ``max_values`` JSON values (every member value and array
    element at every depth: containers and scalars alike), or contains a number out of range.
    One iterative pass that stops at the first violation — a container's children are counted
    before any is looked at, so an array of two million elements is refused in one step; the
    error names the field (or the number's path) and the limit.

    Returns whether every float in it is :func:`models.jcs.plain_float` (the same pass tells the
    signature check whether orjson writes ``value``'s numbers as RFC 8785 does), how many
    values it holds, how many object keys and how many characters its strings and keys hold
    (an event's ingest tokens: all three, :func:`models.ratelimit.event_tokens`).
    """
    plain = True
    keys = 0
    values = 0
    chars = 0
    limit = limits.max_abs_number
    stack: list[tuple[Any, _Path, int]] = [(value, name, 0)]
    while stack:
        node, path, level = stack.pop()
        if level >= max_depth:
            raise ValidationError(f"{name} nests deeper than {max_depth} levels", name)
        values += len(node)
        if type(node) is dict:
            keys += len(node)
            if keys > max_keys:
                raise ValidationError(f"{name} has more than {max_keys} keys", name)
            chars += sum(map(len, node))
            items: Any = node.items()
        else:
            items = enumerate(node)
        if values > max_values:
            raise ValidationError(f"{name} has more than {max_values} values (JSON values at "
                                  "every depth: array elements count too)", name)
        for step, child in items:
            kind = type(child)
            if kind is str:  # most values: one comparison
                chars += len(child)
                continue
            if kind is dict or kind is list:
                stack.append((child, (path, step), level + 1))
            elif kind is float or kind is int:
                if not -limit <= child <= limit:
                    where = clean_text(_path_text((path, step)), 200)  # keys are client text
                    raise ValidationError(f"{where} {_bad_number(child, limits)}", where)
                if kind is float and plain and not plain_float(child):
                    plain = False
    return Shape(plain, values, keys, chars)


def check_shape(
    value: Any, name: str, max_depth: int, max_keys: int, limits: Limits,
    max_values: int | None = None,
) -> bool:
    """:func:`shape_of` (``max_values`` unset: ``limits.max_payload_values``); returns whether
    every float in ``value`` is plain."""
    cap = limits.max_payload_values if max_values is None else max_values
    return shape_of(value, name, max_depth, max_keys, cap, limits).plain


def metadata_values_cap(limits: Limits) -> int:
    """The value cap of ``metadata``: its byte limit. Every value takes at least one byte of
    compact JSON, so this refuses nothing the byte limit would let through — but it refuses a
    huge array before it is walked and serialised to be measured."""
    return limits.max_metadata_bytes


def _payload(obj: Mapping[str, Any], limits: Limits) -> tuple[Mapping[str, Any], Shape]:
    value = obj.get("payload")
    if value is None:
        raise ValidationError("payload is required (a JSON object, may be empty)", "payload")
    if not isinstance(value, dict):
        raise ValidationError(f"payload must be an object, got {type(value).__name__}", "payload")
    shape = shape_of(value, "payload", limits.max_payload_depth, limits.max_payload_keys,
                     limits.max_payload_values, limits)
    return value, shape


def _metadata(obj: Mapping[str, Any], limits: Limits) -> tuple[Mapping[str, Any], Shape]:
    value = obj.get("metadata")
    if value is None:
        return {}, Shape(True, 0, 0, 0)
    if not isinstance(value, dict):
        raise ValidationError("metadata must be an object", "metadata")
    shape = shape_of(value, "metadata", limits.max_metadata_depth, limits.max_metadata_keys,
                     metadata_values_cap(limits), limits)
    size = len(orjson.dumps(value))
    if size > limits.max_metadata_bytes:
        raise ValidationError(
            f"metadata is {size} bytes of JSON, more than the limit of "
            f"{limits.max_metadata_bytes} bytes", "metadata"
        )
    return value, shape


def parse_event(
    obj: Any,
    project_id: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    allow_offline_fields: bool = False,
) -> IngestEvent:
    """Validate one decoded JSON event; raise :class:`ValidationError` naming the bad field.

    ``project_id`` comes from the caller's API key; with ``allow_offline_fields`` (offline
    replay) it may instead come from the event itself, and a boolean ``label`` is accepted.
    """
    return parse_event_counted(obj, project_id, limits=limits,
                               allow_offline_fields=allow_offline_fields)[0]


def parse_event_counted(
    obj: Any,
    project_id: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    allow_offline_fields: bool = False,
) -> tuple[IngestEvent, Size]:
    """:func:`parse_event` and the event's :class:`Size`: how many JSON values its payload,
    metadata and unknown fields hold together (what a batch's value budget counts), how many
    object keys and characters its payload and metadata hold (all three: its ingest tokens,
    :func:`models.ratelimit.event_tokens`)."""
    if not isinstance(obj, dict):
        raise ValidationError(f"an event must be a JSON object, got {type(obj).__name__}", None)
    if project_id is None:
        if not allow_offline_fields:
            raise ValidationError("project_id comes from the API key", "project_id")
        project_id = _string(obj, "project_id", limits.max_id_chars, required=False) or "default"
    priority = obj.get("priority", "normal")
    if priority not in PRIORITIES:
        raise ValidationError(
            f"priority must be one of {', '.join(PRIORITIES)}, got {shown(priority)}", "priority"
        )
    end_of_run = obj.get("end_of_run", False)
    if not isinstance(end_of_run, bool):
        raise ValidationError("end_of_run must be true or false", "end_of_run")
    label = obj.get("label") if allow_offline_fields else None
    if label is not None and not isinstance(label, bool):
        raise ValidationError("label must be true or false", "label")
    cost = _number(obj, "cost", limits)
    if cost is not None and cost < 0:
        raise ValidationError("cost must not be negative", "cost")
    event_id = _string(obj, "event_id", limits.max_id_chars)
    if event_id in DOT_IDS:
        raise ValidationError(
            f"event_id must not be {event_id!r}: in a URL path it is a directory step that "
            "clients remove, so the event could not be looked up or decided", "event_id")
    agent_id = _string(obj, "agent_id", limits.max_id_chars)
    run_id = _string(obj, "run_id", limits.max_run_id_chars)
    service = _string(obj, "service", limits.max_id_chars)
    action = _string(obj, "action", limits.max_action_chars)
    payload, payload_shape = _payload(obj, limits)
    ts = _number(obj, "ts", limits)
    metadata, metadata_shape = _metadata(obj, limits)
    others = check_other_fields(obj, limits,
                                _OFFLINE_FIELDS if allow_offline_fields else KNOWN_FIELDS)
    event = IngestEvent(
        event_id=event_id,
        agent_id=agent_id,
        run_id=run_id,
        service=service,
        action=action,
        payload=payload,
        project_id=project_id,
        priority=priority,
        ts=ts,
        cost=cost,
        end_of_run=end_of_run,
        metadata=metadata,
        label=label,
    )
    return event, Size(payload_shape.values + metadata_shape.values + others,
                       payload_shape.keys + metadata_shape.keys,
                       payload_shape.chars + metadata_shape.chars)


#: The slot setters of :class:`IngestEvent`, in field order. A frozen dataclass's ``__init__``
#: sets each field through ``object.__setattr__`` (≈ 1.8 µs for its 13 fields); calling the
#: slot descriptors directly builds the same object in half that.
_FIELD_ORDER = ("event_id", "agent_id", "run_id", "service", "action", "payload", "project_id",
                "priority", "ts", "cost", "end_of_run", "metadata", "label")
_SETTERS = tuple(IngestEvent.__dict__[name].__set__ for name in _FIELD_ORDER)


def new_event(*values: Any) -> IngestEvent:
    """An :class:`IngestEvent` from its 13 field values in field order, already checked."""
    event = object.__new__(IngestEvent)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12 = _SETTERS
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12 = values
    s0(event, v0), s1(event, v1), s2(event, v2), s3(event, v3), s4(event, v4)
    s5(event, v5), s6(event, v6), s7(event, v7), s8(event, v8), s9(event, v9)
    s10(event, v10), s11(event, v11), s12(event, v12)
    return event


if tuple(f.name for f in dataclasses.fields(IngestEvent)) != _FIELD_ORDER:  # pragma: no cover
    def new_event(*values: Any) -> IngestEvent:  # a field was added: the plain constructor
        return IngestEvent(*values)
