"""Text hidden in base64: the runs of a value that decode to readable text, so that the pattern
rules and the PII detectors read a command, a card number, a national id or a key sent
base64-encoded as they read it plain (:func:`with_decoded`: the payload's leaves, then one more
per value with such runs, its path marked ``(base64)``).

A run is 12 or more characters of the standard or URL-safe base64 alphabet (9 bytes and up: a
Spanish DNI is 12 characters encoded, an SSN 15 and its padding, a card number 24). It is decoded only if it is well-formed base64
and the bytes are mostly readable text (:data:`READABLE`: UTF-8, UTF-16 or Latin-1; what is not
readable is read as spaces); random ids, hashes and binary blobs fail one of these and cost a
failed decode. Decoded text is itself looked at twice more (base64 inside base64), and at most
:data:`MAX_DECODED` characters are produced per value.

>>> decoded_texts("card=NDExMSAxMTExIDExMTEgMTExMQ== ok")
['4111 1111 1111 1111']
>>> decoded_texts("aGVsbG8gd29ybGQgZnJvbSBiYXNlNjQ_")  # URL-safe alphabet
['hello world from base64?']
>>> decoded_texts("NTM2LTIyLTg3MjY="), decoded_texts("MTIzNDU2NzhaIA")
(['536-22-8726'], ['12345678Z '])
>>> decoded_texts("550e8400e29b41d4a716446655440000"), decoded_texts("internationalization")
([], [])
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode
from bisect import bisect_right
from collections.abc import Sequence

from models.guardrails.paths import DECODED, Leaf, fold
from models.guardrails.pii_scan import SEP, starts_of

__all__ = ["MAX_DECODED", "MIN_RUN", "READABLE", "decoded_in", "decoded_texts", "with_decoded"]

#: Shortest run tried (9 decoded bytes).
MIN_RUN = 12
#: Most decoded characters one value yields (its scan is charged to the event's budget).
MAX_DECODED = 65_536
_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_RUN},}}={{0,2}}")
_URLSAFE = str.maketrans("-_", "+/")
#: Share of a decoded text that must be readable (printable, or tab and line breaks) for it to
#: be read; the rest is read as spaces (a control character added before encoding does not
#: hide the text).
READABLE = 0.9
_UNREADABLE = re.compile(r"[^\t\n\r\x20-\x7e\u00a0-\U0010ffff]|[\u2028\u2029\u200b-\u200f"
                         r"\u202a-\u202e\u2060-\u2064\ufeff\U000e0000-\U000e007f]")


_ASCII_PRINTABLE = bytes(range(0x20, 0x7F))


def _mostly(part: int, whole: int) -> bool:
    """Whether ``part`` is at least :data:`READABLE` of ``whole`` (exact: integers)."""
    return part * 10 >= whole * round(READABLE * 10)


def _text(raw: bytes) -> str | None:
    """``raw`` as text when it is mostly readable: UTF-8, else UTF-16 (every other byte zero),
    else Latin-1 when almost every byte is printable ASCII; unreadable characters as spaces."""
    candidates: list[str] = []
    try:
        candidates.append(raw.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    if len(raw) % 2 == 0 and raw:
        zeros_odd, zeros_even = raw[1::2].count(0), raw[::2].count(0)
        half = len(raw) // 2
        if _mostly(zeros_odd, half):
            candidates.append(raw.decode("utf-16-le", "replace"))
        elif _mostly(zeros_even, half):
            candidates.append(raw.decode("utf-16-be", "replace"))
    if not candidates and _mostly(len(raw) - len(raw.translate(None, _ASCII_PRINTABLE)), len(raw)):
        candidates.append(raw.decode("latin-1"))
    for text in candidates:
        bad = len(_UNREADABLE.findall(text))
        if text and _mostly(len(text) - bad, len(text)):
            return _UNREADABLE.sub(" ", text) if bad else text
    return None


def _decode(run: str) -> str | None:
    body = run.rstrip("=")
    if len(body) % 4 == 1 or body.isdigit():  # no base64 has this length; digits are numbers
        return None
    body = body.translate(_URLSAFE)
    try:
        raw = b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return None
    return _text(raw)


def decoded_texts(value: str, depth: int = 3) -> list[str]:
    """The readable texts base64 runs of ``value`` decode to (and, ``depth`` allowing, the
    texts inside those), in order, at most :data:`MAX_DECODED` characters in all."""
    out: list[str] = []
    left = MAX_DECODED
    pending = [(value, depth)]
    while pending and left > 0:
        text, level = pending.pop(0)
        for m in _RUN.finditer(text):
            found = _decode(m.group())
            if found is None:
                continue
            found = fold(found[:left])
            out.append(found)
            left -= len(found)
            if level > 1 and len(found) >= MIN_RUN:
                pending.append((found, level - 1))
            if left <= 0:
                break
    return out


def decoded_in(texts: Sequence[str]) -> list[tuple[int, str]]:
    """:func:`decoded_texts` of each of ``texts`` as (index, decoded text), in order: one
    regex pass over the texts joined (no run spans two: NUL is not in the alphabet) instead of
    one per value — most values have no run at all.

    >>> decoded_in(["plain", "x NDExMSAxMTExIDExMTEgMTExMQ== y", "MTIzNDU2NzhaIA"])
    [(1, '4111 1111 1111 1111'), (2, '12345678Z ')]
    """
    if not texts or max(map(len, texts)) < MIN_RUN:
        return []
    runs = list(_RUN.finditer(SEP.join(texts)))  # SEP is not in the alphabet
    if not runs:
        return []
    starts = starts_of(texts)
    out: list[tuple[int, str]] = []
    done = -1
    for m in runs:
        index = bisect_right(starts, m.start()) - 1
        if index != done and _decode(m.group()) is not None:
            done = index  # the value's runs: decoded once, all of them, with its own cap
            out += [(index, text) for text in decoded_texts(texts[index])]
    return out


def with_decoded(leaves: tuple[Leaf, ...]) -> tuple[Leaf, ...]:
    """``leaves``, then for each string leaf whose base64 runs decode to readable text one
    leaf more: the same key (path rules select it as they select the value), its path ending
    in ``(base64)``, the decoded texts (folded as values are) joined by newlines. Values come
    first, so a scan budget is spent on what was sent before what was decoded.

    >>> from models.guardrails.paths import walk
    >>> [(leaf.path, leaf.value) for leaf in with_decoded(walk({"q": "RFJPUCBUQUJMRSB1c2Vycw=="}))]
    [('q', 'RFJPUCBUQUJMRSB1c2Vycw=='), ('q (base64)', 'DROP TABLE users')]
    """
    texts: list[str] = []
    owners: list[Leaf] = []
    for leaf in leaves:
        value = leaf.value
        if type(value) is str and len(value) >= MIN_RUN:
            texts.append(value)
            owners.append(leaf)
    found = decoded_in(texts)
    if not found:
        return leaves
    by_value: dict[int, list[str]] = {}
    for i, text in found:
        by_value.setdefault(i, []).append(text)
    extra = tuple(owners[i]._replace(parts=(*owners[i].parts, DECODED), value="\n".join(parts))
                  for i, parts in by_value.items())
    return leaves + extra
