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
from typing import Any

import orjson

from models.errors import ValidationError
from models.jcs import plain_float
from models.sanitize import clean_text, display_problem, shown

__all__ = [
    "DEFAULT_LIMITS",
    "PRIORITIES",
    "IngestEvent",
    "Limits",
    "check_shape",
    "json_depth",
    "json_key_count",
    "new_event",
    "parse_event",
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


def check_shape(value: Any, name: str, max_depth: int, max_keys: int, limits: Limits) -> bool:
    """Refuse ``value`` (the field ``name``) if it nests deeper than ``max_depth``, holds more
    than ``max_keys`` object keys, or contains a number out of range. One iterative pass that
    stops at the first violation; the error names the field (or the number's path) and the limit.

    Returns whether every float in it is :func:`models.jcs.plain_float` (the same pass tells the
    signature check whether orjson writes ``value``'s numbers as RFC 8785 does).
    """
    plain = True
    keys = 0
    limit = limits.max_abs_number
    stack: list[tuple[Any, _Path, int]] = [(value, name, 0)]
    while stack:
        node, path, level = stack.pop()
        if level >= max_depth:
            raise ValidationError(f"{name} nests deeper than {max_depth} levels", name)
        if type(node) is dict:
            keys += len(node)
            if keys > max_keys:
                raise ValidationError(f"{name} has more than {max_keys} keys", name)
            items: Any = node.items()
        else:
            items = enumerate(node)
        for step, child in items:
            kind = type(child)
            if kind is str:  # most values: one comparison
                continue
            if kind is dict or kind is list:
                stack.append((child, (path, step), level + 1))
            elif kind is float or kind is int:
                if not -limit <= child <= limit:
                    where = clean_text(_path_text((path, step)), 200)  # keys are client text
                    raise ValidationError(f"{where} {_bad_number(child, limits)}", where)
                if kind is float and plain and not plain_float(child):
                    plain = False
    return plain


def _payload(obj: Mapping[str, Any], limits: Limits) -> Mapping[str, Any]:
    value = obj.get("payload")
    if value is None:
        raise ValidationError("payload is required (a JSON object, may be empty)", "payload")
    if not isinstance(value, dict):
        raise ValidationError(f"payload must be an object, got {type(value).__name__}", "payload")
    check_shape(value, "payload", limits.max_payload_depth, limits.max_payload_keys, limits)
    return value


def _metadata(obj: Mapping[str, Any], limits: Limits) -> Mapping[str, Any]:
    value = obj.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("metadata must be an object", "metadata")
    check_shape(value, "metadata", limits.max_metadata_depth, limits.max_metadata_keys, limits)
    size = len(orjson.dumps(value))
    if size > limits.max_metadata_bytes:
        raise ValidationError(
            f"metadata is {size} bytes of JSON, more than the limit of "
            f"{limits.max_metadata_bytes} bytes", "metadata"
        )
    return value


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
    return IngestEvent(
        event_id=_string(obj, "event_id", limits.max_id_chars),
        agent_id=_string(obj, "agent_id", limits.max_id_chars),
        run_id=_string(obj, "run_id", limits.max_run_id_chars),
        service=_string(obj, "service", limits.max_id_chars),
        action=_string(obj, "action", limits.max_action_chars),
        payload=_payload(obj, limits),
        project_id=project_id,
        priority=priority,
        ts=_number(obj, "ts", limits),
        cost=cost,
        end_of_run=end_of_run,
        metadata=_metadata(obj, limits),
        label=label,
    )


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
