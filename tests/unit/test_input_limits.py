"""Shape limits of ingest events (models.events) and the pure idempotency helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import ValidationError
from models.events import Limits, check_shape, json_depth, json_key_count, parse_event
from models.idempotency import event_fingerprint, request_fingerprint, validate_key

BASE = {"event_id": "e1", "agent_id": "a1", "run_id": "r1", "service": "crm",
        "action": "contacts.read", "payload": {"id": 3}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                               max_size=3),
    max_leaves=20,
)


def _depth_reference(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth_reference(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth_reference(v) for v in value), default=0)
    return 0


@given(json_values)
def test_iterative_depth_agrees_with_the_recursive_definition(value: object) -> None:
    assert json_depth(value) == _depth_reference(value)


@given(json_values, st.integers(1, 6))
def test_check_shape_refuses_exactly_what_exceeds_the_limits(value: object, depth: int) -> None:
    if not isinstance(value, dict):
        value = {"v": value}
    ok = json_depth(value) <= depth and json_key_count(value) <= 10
    try:
        check_shape(value, "payload", depth, 10, Limits())
    except ValidationError as exc:
        assert not ok and exc.field == "payload"
    else:
        assert ok


def test_nesting_far_beyond_the_stack_is_a_validation_error() -> None:
    deep: dict[str, object] = {}
    for _ in range(100_000):
        deep = {"k": deep}
    with pytest.raises(ValidationError) as info:
        parse_event({**BASE, "payload": deep}, "p")
    assert info.value.field == "payload" and "16 levels" in str(info.value)
    assert json_depth(deep) == 100_001


@pytest.mark.parametrize(("payload", "field"), [
    ({"a": [1, 2, float("nan")]}, "payload.a[2]"),
    ({"a": {"b": float("inf")}}, "payload.a.b"),
    ({"n": 10**300}, "payload.n"),
])
def test_numbers_are_named_by_their_path(payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_event({**BASE, "payload": payload}, "p")
    assert info.value.field == field


def test_limits_are_configurable() -> None:
    tight = Limits(max_metadata_keys=1, max_payload_keys=2)
    with pytest.raises(ValidationError, match="more than 1 keys"):
        parse_event({**BASE, "metadata": {"a": 1, "b": 2}}, "p", limits=tight)
    with pytest.raises(ValidationError, match="more than 2 keys"):
        parse_event({**BASE, "payload": {"a": {"b": 1, "c": 2}}}, "p", limits=tight)


def test_fingerprints() -> None:
    e = parse_event(dict(BASE), "p")
    assert event_fingerprint(e) == event_fingerprint(parse_event(dict(reversed(BASE.items())),
                                                                 "p"))
    assert event_fingerprint(e) != event_fingerprint(parse_event({**BASE, "run_id": "r2"}, "p"))
    assert event_fingerprint(e) != event_fingerprint(parse_event(dict(BASE), "other"))
    # fields are length-prefixed: moving bytes between path and query changes the fingerprint
    assert request_fingerprint("POST", "/a", "b", b"") != request_fingerprint("POST", "/ab", "",
                                                                              b"")
    for bad in ("", " x", "x" * 256, "é"):
        with pytest.raises(ValidationError):
            validate_key(bad)
