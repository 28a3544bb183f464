"""Duplicate JSON keys (models.json_keys): the cheap colon count agrees with the reference."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import ValidationError
from models.json_keys import duplicate_key, refuse_duplicate_keys

# keys and strings drawn from a small alphabet with colons, quotes, backslashes and non-ASCII,
# so duplicates are frequent and colons inside strings are too
_text = st.text(alphabet=":a\"\\é😀 ", max_size=3)
_scalars = st.none() | st.booleans() | st.integers(-10, 10) | st.floats(-1e3, 1e3) | _text


def _dumps(node: Any, escape_colons: bool) -> str:
    """JSON text of ``node``, where an object is a list of (key, value) pairs kept as given
    (duplicates too); colons in strings optionally written as ``\\u003a``."""
    if isinstance(node, tuple):
        node = node[1]
        return "{" + ", ".join(f"{_dumps(k, escape_colons)} : {_dumps(v, escape_colons)}"
                               for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + ",".join(_dumps(v, escape_colons) for v in node) + "]"
    text = json.dumps(node, ensure_ascii=False)
    return text.replace(":", "\\u003a") if escape_colons and isinstance(node, str) else text


_trees = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.tuples(st.just("obj"), st.lists(st.tuples(_text, inner), max_size=3)),
    max_leaves=12,
)


def _has_duplicate(node: Any) -> bool:
    if isinstance(node, tuple):
        keys = [k for k, _ in node[1]]
        return len(set(keys)) != len(keys) or any(_has_duplicate(v) for _, v in node[1])
    if isinstance(node, list):
        return any(_has_duplicate(v) for v in node)
    return False


@given(st.tuples(st.just("obj"), st.lists(st.tuples(_text, _trees), max_size=4)),
       st.booleans())
def test_refused_exactly_when_a_key_is_duplicated(tree: Any, escape_colons: bool) -> None:
    raw = _dumps(tree, escape_colons).encode()
    value = orjson.loads(raw)
    if _has_duplicate(tree):
        with pytest.raises(ValidationError, match="appears twice"):
            refuse_duplicate_keys(raw, value)
    else:
        refuse_duplicate_keys(raw, value)
    assert (duplicate_key(raw) is not None) == _has_duplicate(tree)


def test_the_red_teams_body_names_the_key() -> None:
    raw = b'{"event_id":"e1","service":"crm","action":"a","service":"pastebin","payload":{}}'
    with pytest.raises(ValidationError) as info:
        refuse_duplicate_keys(raw, orjson.loads(raw))
    assert info.value.field == "service" and "'service' appears twice" in str(info.value)


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"payload": {"a": {"id": 1, "id": 2}}}', "payload.a.id"),
    (b'{"events": [{"x": 1}, {"y": [{"k": 1, "k": 1}]}]}', "events[1].y[0].k"),
    # same value twice is still two keys
    (b'{"a": "x", "a": "x"}', "a"),
])
def test_nested_duplicates_are_named_by_their_path(raw: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        refuse_duplicate_keys(raw, orjson.loads(raw))
    assert info.value.field == field


def test_an_escaped_colon_cannot_hide_a_duplicate() -> None:
    """``\\u003a`` in the body is one colon fewer in the raw text than orjson writes back; a
    duplicate is one more. Together the counts agree, so an escape sends the body to the
    reference check."""
    raw = b'{"x": "\\u003a", "k": 1, "k": 2}'
    value = orjson.loads(raw)
    assert raw.count(b":") == orjson.dumps(value).count(b":")  # the counts alone would miss it
    with pytest.raises(ValidationError, match="'k' appears twice"):
        refuse_duplicate_keys(raw, value)


def test_colons_in_strings_and_keys_are_not_members() -> None:
    raw = b'{"url": "https://a:8080/x", "t:1": "12:30", "list": ["a:b", {"c:": ":"}]}'
    refuse_duplicate_keys(raw, orjson.loads(raw))
