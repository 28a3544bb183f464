"""Payload skeletons (docs/design.md §3): the shape of a JSON payload, whatever its values.

A skeleton keeps the key structure and replaces every value by a type tag: ``"str"``, ``"num"``
(ints and floats alike, never bools), ``"bool"``, ``"null"``. Objects keep their keys, sorted.
Arrays become the *set* of their element shapes, written ``["[]", shape, ...]`` with the shapes
deduplicated and sorted by their canonical bytes, so ``[1, 2, 3]`` and ``[5]`` look the same and
``[]`` is ``["[]"]``. Objects used as maps — every key id-like (see :func:`is_id_like`), or more
than ``max_keys`` keys — become ``{"<map>": ["|", shape, ...]}``, the set of their value shapes.
(The set starts with ``"|"`` rather than ``"[]"``, so a real ``"<map>"`` key holding an array can
never produce the same skeleton as a map.)

Caps keep hostile payloads cheap and skeletons small:

- ``max_depth``: containers nest at most this many levels in the skeleton (the map's value set
  counts as a level); a deeper object or array becomes ``"deep"``.
- ``max_keys``: objects with more keys are treated as maps.
- ``max_nodes``: at most this many nodes (objects, arrays, tags; not the ``"[]"``/``"|"`` heads)
  are produced; past it every further subtree is ``"trunc"``. An array's distinct element shapes
  are charged in canonical order and a repeated element costs nothing, so ``[x]`` and ``[x] * n``
  always have the same skeleton, even at the cap.

>>> skeleton({"b": [1, 2.5], "a": {"ok": True, "note": None}})
{'a': {'note': 'null', 'ok': 'bool'}, 'b': ['[]', 'num']}
>>> skeleton({"123": {"qty": 1}, "sku_9": {"qty": 2.5}})
{'<map>': ['|', {'qty': 'num'}]}
>>> skeleton([[], [1], "x"])
['[]', 'str', ['[]', 'num'], ['[]']]
>>> canonical(skeleton({"b": 1, "a": "x"}))
b'{"a":"str","b":"num"}'
>>> skeleton_hash({"x": [1, 2, 3]}) == skeleton_hash({"x": [7]})
True
>>> skeleton_hash({"x": 1}) == skeleton_hash({"x": True})
False
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import xxhash

__all__ = [
    "ARRAY",
    "BOOL",
    "DEEP",
    "MAP",
    "MAX_DEPTH",
    "MAX_KEYS",
    "MAX_NODES",
    "NULL",
    "NUM",
    "STR",
    "TRUNC",
    "UNION",
    "canonical",
    "is_id_like",
    "skeleton",
    "skeleton_hash",
]

STR, NUM, BOOL, NULL = "str", "num", "bool", "null"
#: A container nested deeper than ``max_depth``.
DEEP = "deep"
#: A subtree past the ``max_nodes`` budget.
TRUNC = "trunc"
#: Head of an array's element-shape set.
ARRAY = "[]"
#: The one key of a map shape.
MAP = "<map>"
#: Head of a map's value-shape set.
UNION = "|"

#: The default caps. Every payload the gateway accepts (at most 16 levels deep and 10,000
#: values: models.events.Limits) fits them whole: a skeleton that stopped looking at a depth or
#: a size an event may reach would let a change there pass unseen (an attack run put
#: ``privileged: true`` nine levels down a manifest the chain knew, and it was allowed). The
#: map's value set adds a level, hence twice the gateway's depth. Until Dec 5 they were 8 and
#: 512: payloads past those get new node ids.
MAX_DEPTH = 32
MAX_KEYS = 64
MAX_NODES = 16_384

_TAG_BYTES: dict[str, bytes] = {t: orjson.dumps(t) for t in (STR, NUM, BOOL, NULL, DEEP, TRUNC)}
_SORT_KEYS = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps

# Id-like object keys (all ASCII, whole key):
#   -42, 2024-01-15, 10.0.0.1      digits, optionally in groups joined by - _ : .
#   deadbeef12                     hex of length >= 8 (so also UUIDs without dashes)
#   0b5e...-...-...-...-...        UUIDs with dashes, any case
#   sku_123, user-42, ord:9001     letters, one of _ - : ., a digit, then any letters/digits
#   (sku_123a counts; user_42_name does not)
#   a1B2c3D4e5F6g7H8               >= 16 letters/digits with both letters and digits
#   cus_NffrFeUfNV2Hib             >= 16 of [A-Za-z0-9_-] with a digit and BOTH cases (nanoid,
#                                  base64url); the mixed-case rule keeps snake_case names such
#                                  as "address_line_2_city" out.
# and locations (:func:`_is_location`, string tests: no regex backtracking on a hostile key):
#   ann.lee@example.com            e-mail addresses
#   https://x.test/a, s3://b/k     URLs (a scheme, "://", then anything printable)
#   /etc/hosts, ./a, ~/b, C:\\x    paths: absolute, relative to . .. or ~, or with a drive
#   src/main.py                    segments joined by "/" ending in a file extension
#                                  (a bare "a/b" or "read/write" stays a field name)
_ID_KEY = re.compile(
    r"""
      -?[0-9]+(?:[-_:.][0-9]+)*
    | [0-9A-Fa-f]{8,}
    | [0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}
    | [A-Za-z]+[-_:.][0-9][A-Za-z0-9]*
    | (?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{16,}
    | (?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{16,}
    """,
    re.VERBOSE,
)
_id_match = _ID_KEY.fullmatch
_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_SCHEME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def _printable(key: str) -> bool:
    """Printable ASCII without spaces."""
    return key.isascii() and key.isprintable() and " " not in key


def _is_location(key: str) -> bool:
    """An e-mail address, a URL or a file path (see the table above).

    >>> [_is_location(k) for k in ("a.b@x.io", "ftp://h/p", "../x", "C:\\\\w", "a/b/c.json")]
    [True, True, True, True, True]
    >>> [_is_location(k) for k in ("@type", "a@b", "read/write", "a b@c.de", "x:y", "/")]
    [False, False, False, False, False, False]
    """
    if len(key) < 3 or not _printable(key):
        return False
    if "@" in key:
        local, _, domain = key.partition("@")
        labels = domain.split(".")
        return (bool(local) and set(local) <= _LOCAL and len(labels) >= 2
                and all(label and set(label) <= _LABEL for label in labels)
                and len(labels[-1]) >= 2 and labels[-1].isalpha())
    scheme, sep, rest = key.partition("://")
    if sep:
        return bool(scheme and rest) and scheme[0].isalpha() and set(scheme) <= _SCHEME
    if key.startswith(("/", "./", "../", "~/")):
        return len(key.strip("/.~")) > 0
    if key[0].isalpha() and key[1] == ":" and key[2] in "\\/":
        return True
    if "/" in key:
        last = key.rsplit("/", 1)[1]
        stem, dot, ext = last.rpartition(".")
        return bool(dot and stem and 1 <= len(ext) <= 8 and ext.isalnum())
    return False
#: Tags of the exact JSON scalar types (``type(True) is bool``, so bools never read as numbers).
_SCALARS: dict[type, str] = {str: STR, int: NUM, float: NUM, bool: BOOL, type(None): NULL}
_scalar_tag = _SCALARS.get


@functools.lru_cache(maxsize=4096)
def _key_is_id(key: str) -> bool:
    """Memoized :func:`is_id_like` (field names repeat from event to event)."""
    return _id_match(key) is not None or _is_location(key)


def is_id_like(key: str) -> bool:
    """Whether an object key looks like an id (a map key) rather than a field name.

    >>> [is_id_like(k) for k in ("123", "sku_123", "ord:9001", "deadbeef12", "item.7")]
    [True, True, True, True, True]
    >>> [is_id_like(k) for k in ("ann@example.com", "/etc/hosts", "src/app.py", "s3://b/k")]
    [True, True, True, True]
    >>> [is_id_like(k) for k in ("name", "user_id", "items", "v2", "user_42_name")]
    [False, False, False, False, False]
    """
    return _id_match(key) is not None or _is_location(key)


def skeleton(payload: Any, *, max_depth: int = MAX_DEPTH, max_keys: int = MAX_KEYS,
             max_nodes: int = MAX_NODES) -> Any:
    """The skeleton of a decoded JSON value (see the module docstring for the rules).

    Object keys must be strings. Raises ``TypeError`` for values JSON cannot hold and
    ``ValueError`` for negative caps.

    >>> skeleton({"a": {"b": {"c": 1}}}, max_depth=2)
    {'a': {'b': 'deep'}}
    >>> skeleton({"a": 1, "b": 2, "c": 3}, max_nodes=2)
    {'a': 'num', 'b': 'trunc', 'c': 'trunc'}
    >>> skeleton({"name": "x", "tags": []}, max_keys=1)
    {'<map>': ['|', 'str', ['[]']]}
    """
    if max_depth < 0 or max_keys < 0 or max_nodes < 0:
        raise ValueError("skeleton caps must be >= 0")
    used = 0  # nodes produced so far (the budget spent)

    def shape(value: Any, level: int) -> Any:
        """Shape of ``value`` placed at skeleton nesting ``level`` (the top is level 1)."""
        nonlocal used
        if used >= max_nodes:
            return TRUNC
        used += 1
        kind = type(value)
        tag = _scalar_tag(kind)
        if tag is not None:
            return tag
        if kind is dict:
            return DEEP if level > max_depth else obj(value, level)
        if kind is list:
            return DEEP if level > max_depth else members(ARRAY, value, level + 1)
        return other(value, level)

    def other(value: Any, level: int) -> Any:
        """Slow path for subclasses and look-alikes (str/int subclasses, Mapping, tuple)."""
        if isinstance(value, bool):
            return BOOL
        if isinstance(value, (int, float)):
            return NUM
        if isinstance(value, str):
            return STR
        if isinstance(value, Mapping):
            return DEEP if level > max_depth else obj(dict(value), level)
        if isinstance(value, (list, tuple)):
            return DEEP if level > max_depth else members(ARRAY, value, level + 1)
        raise TypeError(f"skeleton() takes decoded JSON; got a {type(value).__name__}")

    def obj(value: dict[str, Any], level: int) -> Any:
        nonlocal used
        if not value:
            return {}
        if len(value) > max_keys or all(map(_key_is_id, value)):
            return {MAP: union(value, level + 1)}
        out: dict[str, Any] = {}
        for k, v in sorted(value.items()):
            tag = _scalar_tag(type(v))  # inline fast path for scalars; same rules as shape()
            if tag is not None and used < max_nodes:
                used += 1
                out[k] = tag
            else:
                out[k] = shape(v, level + 1)
        return out

    def union(value: dict[str, Any], level: int) -> Any:
        """A map's value set, itself a node at ``level``; keys sorted so caps stay order-free."""
        nonlocal used
        if used >= max_nodes:
            return TRUNC
        used += 1
        if level > max_depth:
            return DEEP
        return members(UNION, [value[k] for k in sorted(value)], level + 1)

    def members(head: str, values: Iterable[Any], level: int) -> list[Any]:
        """``[head, *distinct shapes]``: each value is shaped with the budget as it stands at the
        start, so equal values give equal shapes; distinct shapes are then charged in canonical
        order, and one that no longer fits is shaped again with what is left."""
        nonlocal used
        start = used
        distinct: dict[bytes, tuple[Any, int, Any]] = {}
        for value in values:
            tag = _scalar_tag(type(value))
            if tag is not None and start < max_nodes:  # inline fast path, as in obj()
                key = _TAG_BYTES[tag]
                if key not in distinct:
                    distinct[key] = (tag, 1, value)
                continue
            used = start
            s = shape(value, level)
            key = _TAG_BYTES[s] if type(s) is str else _dumps(s, option=_SORT_KEYS)
            if key not in distinct:
                distinct[key] = (s, used - start, value)
        used = start
        kept: dict[bytes, Any] = {}
        for key in sorted(distinct):
            if key in kept:  # an earlier shape, cut down by the cap, came out the same
                continue
            s, cost, value = distinct[key]
            if used + cost <= max_nodes:
                used += cost
            else:
                before = used
                s = shape(value, level)
                key = _TAG_BYTES[s] if type(s) is str else _dumps(s, option=_SORT_KEYS)
                if key in kept:
                    used = before
            kept.setdefault(key, s)
        return [head, *(kept[k] for k in sorted(kept))]

    return shape(payload, 1)


def canonical(skel: Any) -> bytes:
    """Canonical bytes of a skeleton: compact JSON with sorted keys (orjson).

    >>> canonical({"b": ["[]", "num"], "a": "str"})
    b'{"a":"str","b":["[]","num"]}'
    """
    return _dumps(skel, option=_SORT_KEYS)


def skeleton_hash(
    payload: Any, *, max_depth: int = MAX_DEPTH, max_keys: int = MAX_KEYS,
    max_nodes: int = MAX_NODES,
) -> str:
    """xxh3_64 of the canonical skeleton, as 16 lowercase hex characters.

    >>> h = skeleton_hash({"id": 1})
    >>> len(h), h == skeleton_hash({"id": 99})
    (16, True)
    """
    skel = skeleton(payload, max_depth=max_depth, max_keys=max_keys, max_nodes=max_nodes)
    return xxhash.xxh3_64_hexdigest(_dumps(skel, option=_SORT_KEYS))
