"""Ingest events (DESIGN.md §2): the record and its validation. Pure: no I/O.

>>> e = parse_event({"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
...                  "action": "contacts.read", "payload": {"id": 1}}, project_id="p")
>>> (e.priority, e.end_of_run, e.project_id)
('normal', False, 'p')
>>> parse_event({"event_id": "e1"}, project_id="p")
Traceback (most recent call last):
...
ratchet.errors.ValidationError: agent_id is required
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ratchet.errors import ValidationError

__all__ = [
    "IngestEvent",
    "parse_event",
    "PRIORITIES",
    "Limits",
    "DEFAULT_LIMITS",
    "json_depth",
    "json_key_count",
]

PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "critical")

_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Limits:
    """Shape limits on client input (DESIGN.md §5)."""

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
    if _CONTROL_CHARS.search(value):
        raise ValidationError(f"{name} must not contain control characters", name)
    return value


def _number(obj: Mapping[str, Any], name: str, limits: Limits) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number, got {type(value).__name__}", name)
    if not math.isfinite(value) or abs(value) > limits.max_abs_number:
        raise ValidationError(f"{name} must be a finite number of magnitude <= 1e15", name)
    return float(value)


def json_depth(value: Any, _level: int = 0) -> int:
    """Nesting depth of a JSON value: a scalar is 0, ``{}`` is 1, ``{"a": {}}`` is 2."""
    if isinstance(value, dict):
        return 1 + max((json_depth(v, _level + 1) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((json_depth(v, _level + 1) for v in value), default=0)
    return 0


def json_key_count(value: Any) -> int:
    """Number of object keys anywhere inside a JSON value."""
    if isinstance(value, dict):
        return len(value) + sum(json_key_count(v) for v in value.values())
    if isinstance(value, list):
        return sum(json_key_count(v) for v in value)
    return 0


def _bad_number(value: Any, max_abs: float) -> bool:
    """What :func:`_check_numbers` refuses in a scalar: non-finite or too large numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > max_abs


def _shape(value: Any, max_abs: float) -> tuple[int, int, bool]:
    """``(json_depth, json_key_count, any bad number)`` of a JSON value in one walk.

    The hot path of ingest validation (one walk instead of three, no path strings built unless
    a number is bad). Agrees with :func:`json_depth`, :func:`json_key_count` and
    :func:`_check_numbers` (tests/unit/test_event_shape.py).
    """
    if isinstance(value, dict):
        children: Any = value.values()
        keys = len(value)
    elif isinstance(value, list):
        children = value
        keys = 0
    else:
        return 0, 0, _bad_number(value, max_abs)
    depth = 0
    bad = False
    for child in children:
        t = type(child)
        if t is str or t is bool or child is None:
            continue
        if t is int or t is float:
            bad = bad or _bad_number(child, max_abs)
            continue
        d, k, b = _shape(child, max_abs)
        depth = max(depth, d)
        keys += k
        bad = bad or b
    return depth + 1, keys, bad


def _check_numbers(value: Any, path: str, limits: Limits) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_numbers(v, f"{path}.{k}", limits)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_numbers(v, f"{path}[{i}]", limits)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(f"{path} must be a finite number", path)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if abs(value) > limits.max_abs_number:
            raise ValidationError(f"{path} is a number too large (limit 1e15)", path)


def _payload(obj: Mapping[str, Any], limits: Limits) -> Mapping[str, Any]:
    value = obj.get("payload")
    if value is None:
        raise ValidationError("payload is required (a JSON object, may be empty)", "payload")
    if not isinstance(value, dict):
        raise ValidationError(f"payload must be an object, got {type(value).__name__}", "payload")
    depth, keys, bad_number = _shape(value, limits.max_abs_number)
    if depth > limits.max_payload_depth:
        raise ValidationError(
            f"payload nests deeper than {limits.max_payload_depth} levels", "payload"
        )
    if keys > limits.max_payload_keys:
        raise ValidationError(f"payload has more than {limits.max_payload_keys} keys", "payload")
    if bad_number:
        _check_numbers(value, "payload", limits)  # raises, naming the first bad number's path
    return value


def _metadata(obj: Mapping[str, Any], limits: Limits) -> Mapping[str, Any]:
    value = obj.get("metadata")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("metadata must be an object", "metadata")
    if json_key_count(value) > limits.max_metadata_keys:
        raise ValidationError(f"metadata has more than {limits.max_metadata_keys} keys", "metadata")
    if json_depth(value) > limits.max_metadata_depth:
        raise ValidationError(
            f"metadata nests deeper than {limits.max_metadata_depth} levels", "metadata"
        )
    _check_numbers(value, "metadata", limits)
    if len(orjson.dumps(value)) > limits.max_metadata_bytes:
        raise ValidationError(
            f"metadata is larger than {limits.max_metadata_bytes // 1024} KB", "metadata"
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
            f"priority must be one of {', '.join(PRIORITIES)}, got {priority!r}", "priority"
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
