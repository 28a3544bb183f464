"""An event's ingest tokens (models/ratelimit.py ``event_tokens``): one, plus one per
``VALUES_PER_TOKEN`` JSON values, one per ``KEYS_PER_TOKEN`` object keys and one per
``CHARS_PER_TOKEN`` characters of strings and keys — counted by the one walk that checks the
limits, the same on the fast and the reference decode paths."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.events import parse_event_counted
from models.ingest_schema import decode_counted
from models.ratelimit import CHARS_PER_TOKEN, KEYS_PER_TOKEN, VALUES_PER_TOKEN, event_tokens

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=6),
    max_leaves=40,
)


def _event(payload: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"event_id": "e1", "agent_id": "a1", "run_id": "r1", "service": "svc",
            "action": "svc.do", "payload": payload, **more}


def _keys_reference(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_keys_reference(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys_reference(v) for v in value)
    return 0


def _chars_reference(value: Any) -> int:
    if isinstance(value, dict):
        return sum(len(k) + _chars_reference(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_chars_reference(v) for v in value)
    return len(value) if isinstance(value, str) else 0


def test_an_ordinary_event_takes_one_token() -> None:
    assert event_tokens(0, 0) == 1
    assert event_tokens(VALUES_PER_TOKEN - 1, KEYS_PER_TOKEN - 1) == 1
    assert event_tokens(-5, -5) == 1  # never below one


def test_tokens_grow_with_values_and_with_keys() -> None:
    assert event_tokens(VALUES_PER_TOKEN) == 2
    assert event_tokens(VALUES_PER_TOKEN, KEYS_PER_TOKEN) == 3
    # the Dec 4 attack's event: 5,000 keys of strings (≈ 19.5 ms of worker CPU, ≈ 150 ordinary
    # events), was 6 tokens at one per 1,000 values
    assert event_tokens(5_000, 5_000) == 1 + 5_000 // VALUES_PER_TOKEN + 5_000 // KEYS_PER_TOKEN
    assert event_tokens(5_000, 5_000) >= 100
    # one array of 10,000 numbers (no keys) still pays for its values
    assert event_tokens(10_000, 1) >= 100


def test_tokens_grow_with_text() -> None:
    assert event_tokens(1, 1, CHARS_PER_TOKEN - 1) == 1
    assert event_tokens(1, 1, CHARS_PER_TOKEN) == 2
    # round 8 of the Dec 4 attack runs: 60 strings of 63,000 card-like characters (0.15–0.45 s
    # of worker CPU, ≈ 5,000–14,000 ordinary events) took 2 tokens
    assert event_tokens(60, 60, 60 * 63_000) > 5_000


@pytest.mark.parametrize("payload, keys", [
    ({f"k{i}": "x" for i in range(5_000)}, 5_000),
    ({"q": ["x"] * 9_000}, 1),
    ({"rows": [{"a": 1, "b": 2} for _ in range(1_000)]}, 2_001),
    ({"a": {"b": {"c": 1}}}, 3),
])
def test_both_decode_paths_count_the_keys(payload: dict[str, Any], keys: int) -> None:
    fast = decode_counted(_event(payload), "p1")
    slow = parse_event_counted(_event(payload), "p1")
    assert fast[2] == slow[1]
    assert fast[2].keys == keys


@pytest.mark.parametrize("payload, metadata", [
    ({"s": "x" * 63_000}, {}),
    ({"k" * 900: 1, "list": ["ab", "cdé"], "n": {"deep": "漢字"}}, {}),
    ({"s": "y" * 10}, {"note": "z" * 4_000}),
])
def test_both_decode_paths_count_the_text(payload: dict[str, Any],
                                          metadata: dict[str, Any]) -> None:
    extra = {"metadata": metadata} if metadata else {}
    fast = decode_counted(_event(payload, **extra), "p1")[2]
    slow = parse_event_counted(_event(payload, **extra), "p1")[1]
    assert fast == slow
    assert fast.chars == _chars_reference(payload) + _chars_reference(metadata)
    assert event_tokens(*fast) >= 1 + fast.chars // CHARS_PER_TOKEN


@given(json_values, st.dictionaries(st.sampled_from(["m1", "m2"]), st.integers(0, 9)))
def test_keys_counted_are_those_of_payload_and_metadata(value: Any,
                                                        metadata: dict[str, int]) -> None:
    payload = value if isinstance(value, dict) else {"v": value}
    extra = {"metadata": metadata} if metadata else {}
    want = _keys_reference(payload) + len(metadata)
    size = decode_counted(_event(payload, **extra), "p1")[2]
    assert size.keys == want and size.values >= size.keys
    assert size.chars == _chars_reference(payload) + _chars_reference(metadata)
    assert parse_event_counted(_event(payload, **extra), "p1")[1] == size
