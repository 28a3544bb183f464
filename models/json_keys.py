"""Duplicate keys in a JSON body: found without a second parser on the hot path. Pure: no I/O.

orjson (the gateway's parser) keeps the last of two equal keys in one object, as most parsers
do; a proxy, WAF or log reader that keeps the first sees another request. So a body with a
duplicate key anywhere is refused.

**How, cheaply and exactly.** Outside strings, a ``:`` in JSON text is the separator of one
object member, and nothing else. orjson writes the decoded value back with every member's
``:`` and every ``:`` inside its strings as a literal character (it never escapes one). So,
when the raw body spells no colon as an escape (``\\u003a`` / ``\\u003A``, the only other way a
string can hold one):

    colons(raw) - colons(orjson.dumps(value)) = members dropped by the parser (+ the colons of
    the strings inside them)

which is 0 exactly when no key was duplicated. Two ``bytes.count`` and one ``orjson.dumps``: in
C, ≈ 2–4 µs for a 1.4 KB event (orjson's parse itself: 3.5–5; ``python -m
benchmarks.json_duplicates``). A body that does spell
an escaped colon, or that orjson cannot write back (more than 255 levels), or whose counts
differ, takes the reference: the standard library's parser with ``object_pairs_hook``, which
sees every member (≈ 10x slower, never on ordinary input), and names the key and its path.

>>> import orjson
>>> raw = b'{"service": "crm", "payload": {"url": "https://x"}}'
>>> refuse_duplicate_keys(raw, orjson.loads(raw))
>>> raw = b'{"service": "crm", "service": "pastebin"}'
>>> refuse_duplicate_keys(raw, orjson.loads(raw))
Traceback (most recent call last):
...
models.errors.ValidationError: the key 'service' appears twice in one object of the request body; each key may appear once
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from models.errors import ValidationError
from models.sanitize import clean_text, shown

__all__ = ["duplicate_key", "refuse_duplicate_keys"]

#: The escapes ``\u003a`` and ``\u003A`` start with this (a byte search for ``\\`` first: most
#: bodies hold no backslash at all, and a one-byte search is 5x cheaper).
_ESCAPE_HEAD = b"\\u003"


def refuse_duplicate_keys(raw: bytes, value: Any) -> None:
    """:class:`ValidationError` (``field`` = the duplicated key's path) if any object in the JSON
    text ``raw`` — already decoded by orjson into ``value`` — has a key twice."""
    if _surely_unique(raw, value):
        return
    found = duplicate_key(raw)
    if found is None:
        return
    path, key = found
    raise ValidationError(
        f"the key {shown(key)} appears twice in one object of the request body; each key may "
        "appear once", clean_text(path, 200) if path else None)


def _surely_unique(raw: bytes, value: Any) -> bool:
    """True when no key of ``raw`` can be duplicated (the colon count above); False means
    "maybe": ask :func:`duplicate_key`."""
    if b"\\" in raw and _ESCAPE_HEAD in raw:  # maybe an escaped colon (or another escape)
        return False
    try:
        again = orjson.dumps(value)
    except orjson.JSONEncodeError:  # deeper than orjson writes: the reference decides
        return False
    return raw.count(b":") == again.count(b":")


class _Pairs(list[tuple[str, Any]]):
    """An object's members in the order sent, duplicates kept."""


def duplicate_key(raw: bytes) -> tuple[str, str] | None:
    """``(path, key)`` of a duplicated key in the JSON text ``raw`` (path as a field:
    ``events[2].payload.id``), or ``None``. The reference check: every member is seen."""
    try:
        tree = json.loads(raw, object_pairs_hook=_Pairs, parse_int=len, parse_float=len,
                          parse_constant=len)
    except (ValueError, RecursionError):
        # orjson read it (so it is JSON), the standard library cannot: too deep to check
        raise ValidationError("the request body nests too deeply to be checked for duplicate "
                              "keys", None) from None
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack:
        node, path = stack.pop()
        if type(node) is _Pairs:
            seen: set[str] = set()
            for key, child in node:
                where = f"{path}.{key}" if path else key
                if key in seen:
                    return where, key
                seen.add(key)
                stack.append((child, where))
        elif type(node) is list:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))
    return None
