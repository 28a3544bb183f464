"""Shape limits of ingest events (models.events) and the pure idempotency helpers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ingest import parse_batch
from models.errors import TooLargeError, ValidationError
from models.events import (
    Limits,
    check_shape,
    json_depth,
    json_key_count,
    json_value_count,
    parse_event,
    shape_of,
)
from models.idempotency import event_fingerprint, request_fingerprint, validate_key
from models.ingest_schema import decode_event

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


def _values_reference(value: object) -> int:
    if isinstance(value, dict):
        return sum(1 + _values_reference(v) for v in value.values())
    if isinstance(value, list):
        return sum(1 + _values_reference(v) for v in value)
    return 0


@given(json_values, st.integers(0, 12))
def test_value_cap_refuses_exactly_what_holds_more_values(value: object, cap: int) -> None:
    if not isinstance(value, dict):
        value = {"v": value}
    count = _values_reference(value)
    assert json_value_count(value) == count
    try:
        shape = shape_of(value, "payload", 64, 10**6, cap, Limits())
    except ValidationError as exc:
        assert count > cap and exc.field == "payload"
        assert f"more than {cap} values" in str(exc)
    else:
        assert count <= cap and shape.values == count


@pytest.mark.parametrize("decode", [parse_event, decode_event])
def test_a_huge_array_is_refused_by_the_value_cap_before_it_is_walked(decode: object) -> None:
    """The red team's event: one array of 1.9 M elements, no keys to speak of. Refused naming
    the field and the limit; the container's length is counted before its elements are looked
    at, so a list of strings the walk would otherwise skip one by one is no slower."""
    assert callable(decode)
    for payload in ({"q": [0] * 1_900_000}, {"q": ["x"] * 1_900_000}, {"q": [[0] * 5001] * 2}):
        with pytest.raises(ValidationError) as info:
            decode({**BASE, "payload": payload}, "p")
        assert info.value.field == "payload"
        assert "more than 10000 values" in str(info.value)
    # at the cap: accepted (a key counts its value once: 1 + 9,999 elements)
    decode({**BASE, "payload": {"q": [0] * 9_999}}, "p")


@pytest.mark.parametrize("decode", [parse_event, decode_event])
def test_metadata_and_unknown_fields_have_value_caps_too(decode: object) -> None:
    assert callable(decode)
    with pytest.raises(ValidationError) as info:
        decode({**BASE, "metadata": {"m": [0] * 1_900_000}}, "p")
    assert info.value.field == "metadata" and "more than 10240 values" in str(info.value)
    # unknown fields are signed (canonicalised) though never used: capped together
    with pytest.raises(ValidationError) as info:
        decode({**BASE, "junk": [0] * 1_900_000}, "p")
    assert info.value.field == "junk" and "more than 10000 JSON values" in str(info.value)
    with pytest.raises(ValidationError) as info:
        decode({**BASE, "a": [0] * 6_000, "b": [0] * 6_000}, "p")
    assert info.value.field == "b"
    decode({**BASE, "a": [0] * 4_000, "b": [0] * 4_000}, "p")


def test_the_value_cap_is_configurable() -> None:
    tight = Limits(max_payload_values=3)
    parse_event({**BASE, "payload": {"a": [1, 2]}}, "p", limits=tight)
    with pytest.raises(ValidationError, match="more than 3 values"):
        parse_event({**BASE, "payload": {"a": [1, 2, 3]}}, "p", limits=tight)
    with pytest.raises(ValidationError, match="more than 3 values"):
        decode_event({**BASE, "payload": {"a": [1, 2, 3]}}, "p", limits=tight)


def test_a_batch_has_one_value_budget_for_all_its_events() -> None:
    """Many events each under the per-event cap cannot add up to an unbounded request: the
    event that overdraws the budget and every one after it are rejected, the others kept."""
    limits = Limits(max_batch_values=25_000)
    items = [{**BASE, "event_id": f"e{i}", "payload": {"q": [0] * 9_000}} for i in range(5)]
    checked = parse_batch({"events": items}, "p", 100, limits)
    assert [c.error is None for c in checked] == [True, True, False, False, False]
    error = checked[2].error
    assert isinstance(error, TooLargeError) and error.field == "events[2]"
    assert error.status == 413  # payload_too_large: each can go in another request
    assert "more than 25000 JSON values" in str(error)
    # the default budget takes a full batch of realistic events
    small = [{**BASE, "event_id": f"e{i}", "payload": {"rows": [{"id": i, "v": "x"}] * 20}}
             for i in range(1000)]
    assert all(c.error is None for c in parse_batch({"events": small}, "p", 1000))


def test_fingerprints() -> None:
    e = parse_event(dict(BASE), "p")
    assert event_fingerprint(e) == event_fingerprint(parse_event(dict(reversed(BASE.items())),
                                                                 "p"))
    assert event_fingerprint(e) != event_fingerprint(parse_event({**BASE, "run_id": "r2"}, "p"))
    assert event_fingerprint(e) != event_fingerprint(parse_event(dict(BASE), "other"))
    # the RFC 8785 form the signature covers: numbers written anew are the same event
    same = {**BASE, "payload": {"limit": 1, "big": 10**15, "z": 0, "n": [{"w": 2}]}, "ts": 17}
    anew = {**BASE, "payload": {"limit": 1.0, "big": 1e15, "z": -0.0, "n": [{"w": 2.0}]},
            "ts": 17.0, "metadata": {}}
    assert event_fingerprint(parse_event(same, "p")) == event_fingerprint(parse_event(anew, "p"))
    for other in ({"limit": 1.5}, {"limit": "1"}, {"limit": True}, {"limit": [1]}):
        changed = {**same, "payload": {**same["payload"], **other}}
        assert event_fingerprint(parse_event(changed, "p")) != event_fingerprint(
            parse_event(same, "p")), other
    # fields are length-prefixed: moving bytes between path and query changes the fingerprint
    assert request_fingerprint("POST", "/a", "b", b"") != request_fingerprint("POST", "/ab", "",
                                                                              b"")
    for bad in ("", " x", "x" * 256, "é"):
        with pytest.raises(ValidationError):
            validate_key(bad)
