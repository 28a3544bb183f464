"""The msgspec fast path (models/ingest_schema.py) agrees with the reference walk
(models.events.parse_event) on every event: the same event when accepted, the same message and
field when refused."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ValidationError
from models.events import DEFAULT_LIMITS, IngestEvent, Limits, parse_event
from models.ingest_schema import _UNSAFE, _display_safe, decode_event

GOOD: dict[str, Any] = {"event_id": "e1", "agent_id": "a", "run_id": "r", "service": "crm",
                        "action": "contacts.read", "payload": {"id": 1}}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
    st.sampled_from(["", "x" * 129, "x" * 257, "a\u200bb", "<b>", "ok\x07", "low", "high",
                     1e15, -1e15, 1e15 + 1, 10**15 + 1, -0.0]),
)
json_values = st.recursive(
    scalars, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                    st.dictionaries(st.text(max_size=4), kids, max_size=3)),
    max_leaves=12,
)
FIELDS = ["event_id", "agent_id", "run_id", "service", "action", "payload", "priority", "ts",
          "cost", "end_of_run", "metadata", "project_id", "label", "extra"]


def outcome(fn: Any, obj: Any, limits: Limits) -> tuple[str, Any]:
    try:
        ev = fn(obj, limits)
    except ValidationError as exc:
        return "error", (str(exc), exc.field)
    assert isinstance(ev, IngestEvent)
    return "event", ev


def both(obj: Any, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, Any]:
    fast = outcome(lambda o, lim: decode_event(o, "p", lim), obj, limits)
    ref = outcome(lambda o, lim: parse_event(o, "p", limits=lim), obj, limits)
    return fast, ref


@settings(max_examples=600, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
       dropped=st.sets(st.sampled_from(FIELDS), max_size=2))
def test_agrees_with_the_reference_walk(changes: dict[str, Any], dropped: set[str]) -> None:
    obj = {**GOOD, **changes}
    for name in dropped:
        obj.pop(name, None)
    fast, ref = both(obj)
    assert fast == ref


@pytest.mark.parametrize("obj, message, field", [
    ({**GOOD, "event_id": 7}, "event_id must be a string, got int", "event_id"),
    ({**GOOD, "agent_id": "a\u200b"}, "agent_id must not contain invisible formatting characters",
     "agent_id"),
    ({**GOOD, "payload": {"a": {"b": 1e16}}}, "payload.a.b is a number too large (limit 1e15)",
     "payload.a.b"),
    ({**GOOD, "cost": -1}, "cost must not be negative", "cost"),
    ({**GOOD, "priority": "urgent"}, ("priority must be one of low, normal, high, critical, "
                                      "got 'urgent'"), "priority"),
    ({k: v for k, v in GOOD.items() if k != "payload"},
     "payload is required (a JSON object, may be empty)", "payload"),
])
def test_refusals_name_the_field(obj: dict[str, Any], message: str, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_event(obj, "p")
    assert (str(caught.value), caught.value.field) == (message, field)


def test_metadata_and_payload_limits_come_from_the_limits_handed_in() -> None:
    tight = Limits(max_payload_depth=2, max_metadata_bytes=20, max_metadata_keys=2)
    for obj in ({**GOOD, "payload": {"a": {"b": {"c": 1}}}},
                {**GOOD, "metadata": {"k": "x" * 30}},
                {**GOOD, "metadata": {"a": 1, "b": 2, "c": 3}}):
        fast, ref = both(obj, tight)
        assert fast[0] == "error" and fast == ref
    fast, ref = both({**GOOD, "metadata": {"k": "v"}, "ts": 3, "cost": 0.5}, tight)
    assert fast == ref and fast[0] == "event" and fast[1].ts == 3.0


def test_the_ascii_shortcut_finds_exactly_the_unsafe_characters() -> None:
    """``_display_safe`` (no regex for ASCII text) agrees with the unsafe-character regex on
    every code point, alone and between safe characters."""
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        for text in (chr(code), f"a {chr(code)}b"):
            assert _display_safe(text) == (_UNSAFE.search(text) is None), hex(code)
