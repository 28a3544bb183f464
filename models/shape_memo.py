"""Skeleton hashes and node ids memoized by a payload's key structure. Pure: no I/O.

:func:`models.skeleton.skeleton_hash` walks a payload, sorts its keys, deduplicates its arrays
and serializes the result on every call (≈ 5–10 µs per event in Python); yet payload shapes
repeat from event to event — that repetition is what the Markov chain learns. This module
computes a cheap *structure signature* of a payload instead (its keys in their order, the exact
type of every scalar, arrays as their distinct element signatures in first-seen order,
containers below ``max_depth`` as their bare type) and remembers the reference hash per
signature. The reference stays the spec: a miss calls it, and a property test
(``tests/unit/test_shape_memo.py``) checks identical hashes on generated payloads.

Why a signature determines the skeleton: the skeleton looks only at keys, at the *types* of
scalars, at the distinct shapes of array elements (a repeated element costs nothing and never
changes the result, even at the node cap), and not at all inside a container nested deeper than
``max_depth`` (the skeleton's nesting level is never below the payload's depth, so such a
container is ``"deep"``, or ``"trunc"`` past the budget, whatever it holds). Values of any other
type (subclasses, tuples, Mappings), objects with more than ``max_keys`` keys and payloads
bigger than ``_WALK_BUDGET`` nodes are not memoized: the reference answers them directly.

The memo is bounded (cleared when full), so payloads whose keys are ids cost one signature
walk more than the reference and cannot grow memory without bound.

>>> from models.skeleton import MAX_DEPTH, MAX_KEYS, MAX_NODES, _key_is_id, skeleton_hash
>>> skeleton_hash_memo({"b": [1, 2], "a": None}) == skeleton_hash({"a": None, "b": [3]})
True
>>> event_nodes({"q": "x"}, "crm", "contacts.read") == event_nodes({"q": "y"}, "crm", "contacts.list")
True
"""

from __future__ import annotations

from typing import Any

from models.nodes import node_id
from models.skeleton import MAX_DEPTH, MAX_KEYS, MAX_NODES, _key_is_id, skeleton_hash

__all__ = ["event_nodes", "memo_clear", "skeleton_hash_memo"]

#: Remembered signatures (and remembered rich node ids); each memo is cleared when full.
_MEMO_CAP = 16_384
#: Signature nodes a payload may have and still be memoized (the reference caps its own work).
_WALK_BUDGET = 2_048
_SCALARS = frozenset((str, int, float, bool, type(None)))
#: Head of a folded map's signature (see :func:`_walk_maps`).
MAP_SIG = "<map>"

_skel_memo: dict[Any, str] = {}
_rich_memo: dict[tuple[str, str, str], str] = {}
#: Top-level keys of payloads that held an id-keyed map (see :func:`_walk_maps`).
_fold_first: set[tuple[Any, ...]] = set()


class _NotMemoizable(Exception):
    """A value the signature cannot stand for exactly (or a payload too big to remember)."""


def _signature(payload: Any, max_depth: int, max_keys: int) -> Any:
    """The structure signature of ``payload`` (see the module docstring). Raises
    :class:`_NotMemoizable` for values it cannot stand for exactly."""
    return _walk(payload, 1, max_depth, max_keys, [_WALK_BUDGET])


def _walk(value: Any, depth: int, max_depth: int, max_keys: int, left: list[int]) -> Any:
    """Signature of ``value`` at payload depth ``depth``; ``left[0]``: nodes still allowed.
    (Plain loops, not comprehensions: each comprehension is a function call in Python 3.11.)"""
    kind = type(value)
    if kind is dict:
        if depth > max_depth:
            return dict
        n = len(value)
        left[0] -= n + 1
        if left[0] < 0 or n > max_keys:
            raise _NotMemoizable
        types = tuple(map(type, value.values()))
        if _SCALARS.issuperset(types):
            return (tuple(value), types)
        d = depth + 1
        sub = []
        for v, t in zip(value.values(), types):
            sub.append(t if t in _SCALARS else _walk(v, d, max_depth, max_keys, left))
        return (tuple(value), tuple(sub))
    if kind in _SCALARS:
        return kind
    if kind is list:
        if depth > max_depth:
            return list
        left[0] -= len(value) + 1
        if left[0] < 0:
            raise _NotMemoizable
        types = tuple(dict.fromkeys(map(type, value)))
        if _SCALARS.issuperset(types):
            return (None, types)
        d = depth + 1
        distinct: dict[Any, None] = {}
        for v in value:
            t = type(v)
            distinct[t if t in _SCALARS else _walk(v, d, max_depth, max_keys, left)] = None
        return (None, tuple(distinct))
    raise _NotMemoizable


def _walk_maps(value: Any, depth: int, max_depth: int, max_keys: int, left: list[int]) -> Any:
    """:func:`_walk` with every object the skeleton treats as a map (not empty, at most
    ``max_keys`` keys, every key id-like: :func:`models.skeleton.is_id_like`) folded into
    ``(MAP_SIG, distinct value signatures)``, taken in sorted key order as the skeleton takes
    the values (the first value of each shape is the one it keeps). A map's skeleton depends on
    its values' shapes only, never on its keys, so maps of other ids share this signature;
    ``MAP_SIG`` (a string) never stands where :func:`_walk` puts an object's key tuple or
    ``None``, so a folded signature never equals an unfolded one of another payload. Keys
    that are not ``str`` raise :class:`_NotMemoizable` (the reference decides about them)."""
    kind = type(value)
    if kind is dict:
        if depth > max_depth:
            return dict
        n = len(value)
        left[0] -= n + 1
        if left[0] < 0 or n > max_keys:
            raise _NotMemoizable
        d = depth + 1
        keys = tuple(value)
        for k in keys:
            if type(k) is not str:
                raise _NotMemoizable
        if n and all(map(_key_is_id, keys)):
            distinct: dict[Any, None] = {}
            for k in sorted(keys):
                v = value[k]
                t = type(v)
                distinct[t if t in _SCALARS else _walk_maps(v, d, max_depth, max_keys, left)] = None
            return (MAP_SIG, tuple(distinct))
        sub = []
        for v in value.values():
            t = type(v)
            sub.append(t if t in _SCALARS else _walk_maps(v, d, max_depth, max_keys, left))
        return (keys, tuple(sub))
    if kind in _SCALARS:
        return kind
    if kind is list:
        if depth > max_depth:
            return list
        left[0] -= len(value) + 1
        if left[0] < 0:
            raise _NotMemoizable
        d = depth + 1
        seen: dict[Any, None] = {}
        for v in value:
            t = type(v)
            seen[t if t in _SCALARS else _walk_maps(v, d, max_depth, max_keys, left)] = None
        return (None, tuple(seen))
    raise _NotMemoizable


def skeleton_hash_memo(
    payload: Any, *, max_depth: int = MAX_DEPTH, max_keys: int = MAX_KEYS,
    max_nodes: int = MAX_NODES,
) -> str:
    """Exactly :func:`models.skeleton.skeleton_hash`, remembered per structure signature."""
    try:
        if type(payload) is dict and max_depth >= 1 and len(payload) <= max_keys:
            # an object at the top (the usual payload): its types are needed anyway
            names = tuple(payload)
            if names in _fold_first:
                return _folded_hash(payload, max_depth, max_keys, max_nodes)
            types = tuple(map(type, payload.values()))
            if _SCALARS.issuperset(types):  # the common case: a flat object of scalars
                sig: Any = (names, types)
            else:
                left = [_WALK_BUDGET - len(payload) - 1]
                sub = []
                for v, t in zip(payload.values(), types):
                    sub.append(t if t in _SCALARS else _walk(v, 2, max_depth, max_keys, left))
                sig = (names, tuple(sub))
        else:
            sig = _signature(payload, max_depth, max_keys)
    except _NotMemoizable:
        return skeleton_hash(payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
    key = (sig, max_depth, max_keys, max_nodes)
    found = _skel_memo.get(key)
    if found is None:
        # Not seen: maybe a payload with an id-keyed map, whose keys are new every time — look
        # it up by the signature with maps collapsed (stored under that one when it differs).
        try:
            folded = _walk_maps(payload, 1, max_depth, max_keys, [_WALK_BUDGET])
        except _NotMemoizable:
            return skeleton_hash(
                payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
        if folded != sig:
            if type(payload) is dict:  # its next payloads of these keys: folded straight away
                if len(_fold_first) >= _MEMO_CAP:
                    _fold_first.clear()
                _fold_first.add(tuple(payload))
            key = (folded, max_depth, max_keys, max_nodes)
            found = _skel_memo.get(key)
            if found is not None:
                return found
        found = skeleton_hash(payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
        if len(_skel_memo) >= _MEMO_CAP:
            _skel_memo.clear()
        _skel_memo[key] = found
    return found


def _folded_hash(payload: dict[str, Any], max_depth: int, max_keys: int, max_nodes: int) -> str:
    """:func:`skeleton_hash_memo` by the folded signature alone — always a valid key (equal
    folded signatures, equal skeletons); taken for top-level keys that held a map before."""
    try:
        folded = _walk_maps(payload, 1, max_depth, max_keys, [_WALK_BUDGET])
    except _NotMemoizable:
        return skeleton_hash(payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
    key = (folded, max_depth, max_keys, max_nodes)
    found = _skel_memo.get(key)
    if found is None:
        found = skeleton_hash(payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
        if len(_skel_memo) >= _MEMO_CAP:
            _skel_memo.clear()
        _skel_memo[key] = found
    return found


def event_nodes(payload: Any, service: str, action: str) -> tuple[str, str]:
    """(skeleton hash, rich node id) of an event: exactly ``skeleton_hash(payload)`` and
    ``node_id(that, service=service, action=action, rich=True)``, both remembered."""
    skel = skeleton_hash_memo(payload)
    key = (skel, service, action)
    rich = _rich_memo.get(key)
    if rich is None:
        rich = node_id(skel, service=service, action=action, rich=True)
        if len(_rich_memo) >= _MEMO_CAP:
            _rich_memo.clear()
        _rich_memo[key] = rich
    return skel, rich


def memo_clear() -> None:
    """Forget every remembered signature and node id (tests, benchmarks of a cold start)."""
    _skel_memo.clear()
    _rich_memo.clear()
    _fold_first.clear()
