"""Readable labels of Markov nodes: which call a node hash stands for. Pure: no I/O.

A node is a hash (``models.nodes``): fine for counting, opaque to a person. A label names the
service, the action and the payload's *key paths* (from its skeleton, ``models.skeleton``), each
path ending in its value's type tag — so a label says "crm contacts.read with ``query:str``,
``limit:num``" and two labels can be compared path by path (``models.explain``).

Bounded, because payloads are the caller's: at most :data:`MAX_PATHS` paths, each cut to
:data:`MAX_PATH_CHARS` characters, and at most :data:`MAX_LABEL_BYTES` bytes of paths in all;
``total`` keeps how many paths the shape really had and ``truncated`` says some were left out.
Keys are shown through ``models.sanitize.clean_text`` (no markup, no control characters).

In the default (non-rich) mode a node is the shape alone, shared by every action of the chain's
service that sends it: the label names the action it was first seen with.

>>> lab = label_of("crm", "contacts.read", {"query": "x", "page": {"size": 5}, "tags": ["a"]})
>>> lab.paths
('page.size:num', 'query:str', 'tags[]:str')
>>> decode_label(encode_label(lab)) == lab
True
>>> describe(lab)
'crm contacts.read {page.size:num, query:str, tags[]:str}'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from models.sanitize import clean_text
from models.skeleton import ARRAY, MAP, UNION, skeleton
from models.unicode_sets import IGNORABLE_CLASS

__all__ = [
    "MAX_LABEL_BYTES",
    "MAX_PATHS",
    "MAX_PATH_CHARS",
    "NodeLabel",
    "decode_label",
    "describe",
    "encode_label",
    "key_paths",
    "label_of",
    "visible",
]

#: Key paths kept per label (the sorted first ones).
MAX_PATHS = 32
#: Characters of one key path at most (longer ones end in "…").
MAX_PATH_CHARS = 96
#: Bytes (UTF-8) of all kept key paths together at most.
MAX_LABEL_BYTES = 1024
#: Service and action are validated ids (``models.events``); cut anyway, labels are bounded.
_MAX_NAME_CHARS = 128


@dataclass(frozen=True, slots=True)
class NodeLabel:
    """What a node stands for: service, action and the shape's key paths (bounded)."""

    service: str
    action: str
    #: Sorted key paths, ``a.b:num``, ``items[].id:str``, ``headers.*:str`` (``*`` = map keys).
    paths: tuple[str, ...]
    #: Paths of the whole shape before the caps (``len(paths)`` when nothing was left out).
    total: int

    @property
    def truncated(self) -> bool:
        return self.total > len(self.paths)


def _leaves(shape: Any, prefix: str) -> Iterator[str]:
    """Every leaf path of a skeleton: scalar tags (and ``deep``/``trunc``) end a path after
    ``:``; empty objects and arrays end it as ``{}`` and ``[]``."""
    if isinstance(shape, str):
        yield f"{prefix}:{shape}" if prefix else f":{shape}"
    elif isinstance(shape, dict):
        if not shape:
            yield f"{prefix}{{}}" if prefix else "{}"
        elif MAP in shape and len(shape) == 1 and isinstance(shape[MAP], list):
            for member in shape[MAP][1:] if shape[MAP][:1] == [UNION] else shape[MAP]:
                yield from _leaves(member, f"{prefix}.*" if prefix else "*")
        else:
            for key in sorted(shape):
                # markup removed; what cannot be seen written as its escape, not dropped
                name = clean_text(visible(str(key))) or "?"
                yield from _leaves(shape[key], f"{prefix}.{name}" if prefix else name)
    elif isinstance(shape, list):
        members = shape[1:] if shape[:1] == [ARRAY] else shape
        if not members:
            yield f"{prefix}[]"
        for member in members:
            yield from _leaves(member, f"{prefix}[]")


def key_paths(skel: Any) -> list[str]:
    """All leaf key paths of a skeleton, sorted and without repeats (uncapped).

    >>> key_paths({"<map>": ["|", {"qty": "num"}]})
    ['*.qty:num']
    >>> key_paths({"a": {}, "b": ["[]"], "c": ["[]", "num", {"d": "null"}]})
    ['a{}', 'b[]', 'c[].d:null', 'c[]:num']
    >>> key_paths("str")
    [':str']
    """
    return sorted(set(_leaves(skel, "")))


#: Characters a reader cannot see or tell apart beyond what ``str.isprintable`` refuses: the
#: Unicode Default_Ignorable code points (variation selectors, fillers, the combining grapheme
#: joiner…), and the backslash that starts an escape and the characters that delimit a label's
#: paths (so a key ``to\u200b`` written with a real backslash, or ``id:num, to``, reads as what
#: it is).
_HIDDEN = re.compile(f"[\\\\:,{{}}{IGNORABLE_CLASS}]")


def _escape(c: str) -> str:
    if c in "\\:,{}":
        return "\\" + c
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def visible(text: str) -> str:
    r"""``text`` with every character a reader could not see or tell apart — invisible format
    characters (zero-width spaces and joiners, bidi controls), other default-ignorable ones
    (variation selectors, Hangul fillers), spaces other than the ASCII one, control characters
    — written as its escape, and a backslash or a label delimiter (``:,{}``) escaped with a
    backslash; so that a key ``to\u200b`` is never shown as ``to`` to the person deciding on it.

    >>> visible("to\u200b"), visible("a\u00a0b"), visible("plain key"), visible("x\U000e0041")
    ('to\\u200b', 'a\\u00a0b', 'plain key', 'x\\U000e0041')
    >>> visible("to\ufe0f"), visible("to\u3164"), visible("to\\u200b"), visible("id:num, to")
    ('to\\ufe0f', 'to\\u3164', 'to\\\\u200b', 'id\\:num\\, to')
    """
    if text.isprintable() and not _HIDDEN.search(text):
        return text
    return "".join(_escape(c) if not c.isprintable() or _HIDDEN.match(c) else c for c in text)


def _cap(path: str) -> str:
    return path if len(path) <= MAX_PATH_CHARS else path[: MAX_PATH_CHARS - 1] + "…"


def label_of(service: str, action: str, payload: Any) -> NodeLabel:
    """The bounded label of an event's node (``payload`` decoded JSON, shaped here).

    >>> big = label_of("s", "a", {f"key{chr(97 + i // 26)}{chr(97 + i % 26)}": i
    ...                           for i in range(50)})
    >>> len(big.paths), big.total, big.truncated
    (32, 50, True)
    """
    paths = key_paths(skeleton(payload))
    kept: list[str] = []
    size = 0
    for path in paths:
        path = _cap(path)
        cost = len(path.encode())
        if len(kept) >= MAX_PATHS or size + cost > MAX_LABEL_BYTES:
            break
        kept.append(path)
        size += cost
    return NodeLabel(service[:_MAX_NAME_CHARS], action[:_MAX_NAME_CHARS], tuple(kept), len(paths))


def encode_label(label: NodeLabel) -> bytes:
    """Compact JSON of a label as stored in Redis (``s``, ``a``, ``k`` paths, ``n`` total)."""
    return orjson.dumps({"s": label.service, "a": label.action, "k": list(label.paths),
                         "n": label.total})


def decode_label(raw: bytes | str) -> NodeLabel | None:
    """A stored label, or None when ``raw`` is not one (never raises on stored bytes)."""
    try:
        doc = orjson.loads(raw)
        paths = tuple(str(p) for p in doc["k"])
        return NodeLabel(str(doc["s"]), str(doc["a"]), paths, int(doc.get("n", len(paths))))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def describe(label: NodeLabel, max_paths: int = 8) -> str:
    """One line: ``service action {path, path, …}`` (``+N more`` past ``max_paths``)."""
    shown = list(label.paths[:max_paths])
    more = label.total - len(shown)
    if more > 0:
        shown.append(f"+{more} more")
    return f"{label.service} {label.action} {{{', '.join(shown)}}}"
