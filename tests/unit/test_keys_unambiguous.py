"""Issue 10, finding 2: no caller-supplied string can make one Redis key name another.

Every public builder of :class:`ratchet.store.keys.Keys` is called with hostile strings (``:``, ``{``,
``}``, ``%``, suffixes of other keys such as ``:nodes``); hash tags (``tag``) are hex digests
in Ratchet, so they are drawn as such. Two different calls — same builder or not — must never
produce the same key, and no key may be another key followed by ``:`` (a run id must not reach
into the structure of another run's keys). On main ``ab1019b`` run ``pr-X:nodes``'s state key
was run ``pr-X``'s node list.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ratchet.store.keys import Keys, part

KEYS = Keys("rt")
BUILDERS = {
    name: inspect.signature(fn)
    for name, fn in inspect.getmembers(KEYS, inspect.ismethod)
    if not name.startswith("_")
}
HOSTILE = st.text(alphabet="ab:{}%-_.", min_size=0, max_size=8) | st.sampled_from(
    ["pr-X", "pr-X:nodes", "pr-X:win", "x}:run:pr-X", "%3A", ":", "{", "}"]
)
HEX = st.text(alphabet="0123456789abcdef", min_size=1, max_size=4)
#: Integer parameters (time-bucket indices) are typed ints: a caller cannot pass text there.
INDEX = st.integers(min_value=0, max_value=10**9)


def _keys(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(k) for k in dataclasses.astuple(value)]


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, tuple[Any, ...]]:
    name = draw(st.sampled_from(sorted(BUILDERS)))
    args = tuple(
        draw(HEX if p == "tag" else INDEX if param.annotation in (int, "int") else HOSTILE)
        for p, param in BUILDERS[name].parameters.items()
    )
    return name, args


def _built(call: tuple[str, tuple[Any, ...]]) -> list[str]:
    name, args = call
    return _keys(getattr(KEYS, name)(*args))


@settings(max_examples=3000, deadline=None)
@given(calls(), calls())
def test_different_calls_never_name_the_same_or_a_nested_key(
    a: tuple[str, tuple[Any, ...]], b: tuple[str, tuple[Any, ...]]
) -> None:
    if a == b or a[0] == "guard_tag" or b[0] == "guard_tag":  # guard_tag is a digest, not a key
        return
    for ka in _built(a):
        for kb in _built(b):
            assert ka != kb, (a, b, ka)
            assert not kb.startswith(ka + ":"), (a, b, ka, kb)


def test_the_reported_collision_is_gone() -> None:
    tag = KEYS.guard_tag("p", "a")
    first = KEYS.guard_run_keys(tag, "pr-X")
    second = KEYS.guard_run_keys(tag, "pr-X:nodes")
    assert second.state not in dataclasses.astuple(first)
    assert KEYS.run("t", "pr-X:x") != KEYS.run("t", "pr-X") + ":x"


@given(st.text(max_size=40), st.text(max_size=40))
def test_part_is_one_to_one_and_structure_free(x: str, y: str) -> None:
    assert not set(part(x)) & set(":{}")
    assert (part(x) == part(y)) == (x == y)
