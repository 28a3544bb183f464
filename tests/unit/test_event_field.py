"""``event_field`` (the dedup field of an event id) equals its reference definition: ``u`` + the
16 bytes of a canonical lowercase UUID, ``e:`` + the UTF-8 id otherwise — for UUIDs in every
spelling, near-UUIDs and arbitrary text."""

from __future__ import annotations

import re
import uuid

from hypothesis import given
from hypothesis import strategies as st

from ratchet.store.keys import event_field

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def reference(event_id: str) -> bytes:
    if len(event_id) == 36 and _UUID.fullmatch(event_id):
        return b"u" + uuid.UUID(event_id).bytes
    return b"e:" + event_id.encode()


_HEXISH = st.sampled_from("0123456789abcdefABCDEFgxz -\u0660\u00e9 \t\n+_")


@st.composite
def near_uuids(draw: st.DrawFn) -> str:
    """A UUID in some spelling, then some characters replaced by digit-like or other ones."""
    text = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1))))
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.replace("-", "")
    chars = list(text)
    for _ in range(draw(st.integers(0, 3))):
        if chars:
            chars[draw(st.integers(0, len(chars) - 1))] = draw(_HEXISH)
    if draw(st.booleans()):
        chars.insert(draw(st.integers(0, len(chars))), draw(_HEXISH))
    return "".join(chars)


@given(st.one_of(near_uuids(), st.text(max_size=40), st.text(_HEXISH, min_size=30, max_size=40)))
def test_event_field_matches_reference(event_id: str) -> None:
    assert event_field(event_id) == reference(event_id)


def test_forms() -> None:
    canonical = str(uuid.uuid4())
    assert event_field(canonical) == b"u" + uuid.UUID(canonical).bytes
    assert event_field(canonical.upper()) == b"e:" + canonical.upper().encode()
    assert event_field(" " + canonical[1:]) == b"e:" + (" " + canonical[1:]).encode()
    assert event_field(canonical[:35] + "\u0660") == reference(canonical[:35] + "\u0660")


@given(st.lists(st.one_of(near_uuids(), st.text(max_size=40)), min_size=1, max_size=6))
def test_remembered_fields_equal_the_definition(ids: list[str]) -> None:
    """Remembered per id: first call, second call and after the memo was emptied agree."""
    from ratchet.store import keys

    for round_ in range(3):
        if round_ == 2:
            keys._FIELDS.clear()
        for event_id in ids:
            assert event_field(event_id) == reference(event_id)


def test_field_memo_is_bounded() -> None:
    from ratchet.store import keys

    keys._FIELDS.clear()
    for i in range(keys._FIELDS_MAX + 5):
        event_field(f"ev-{i}")
    assert len(keys._FIELDS) <= keys._FIELDS_MAX
    assert event_field("ev-1") == b"e:ev-1"
