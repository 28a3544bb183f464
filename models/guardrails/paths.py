"""Key paths: select payload values for a guardrail, and walk a payload once into leaves.

Path syntax (segments separated by ``.``):

- ``name``  an object key, exactly;
- ``*``     any one object key;
- ``**``    any depth, including none (keys and array elements);
- ``[]``    after a segment: each element of the array there (``items[]``, ``rows[][]``).

Strings are read as the content guardrails judge (:func:`fold`): text that is not plain ASCII is
NFKC-normalised (fullwidth digits and letters, compatibility spaces such as the no-break space,
ligatures: their plain forms) and stripped of invisible format characters (zero-width spaces
and joiners, soft hyphens, bidi controls), so ``DROP\u00a0TABLE``, ``DR\u200bOP TABLE`` and a
card number in fullwidth digits meet the same patterns and detectors as their plain spelling.

A path addresses the values *at* that place, not below it: ``customer`` selects the value of
``customer`` — or, when that is an array, its elements — and ``customer.**`` everything under
it. An array between keys is written: a value inside ``contacts: [{email: ...}]`` is
``contacts[].email``, or ``**.email``. Key names match whatever their case (``sql`` selects
``SQL``), except in a set that excludes. Keys that contain ``.``, ``[``, ``]`` or ``*`` can only
be reached by wildcards.

>>> leaves = walk({"a": {"b": "x"}, "items": [{"sku": "s1"}, {"sku": 2}], "ok": True})
>>> [(leaf.path, leaf.value) for leaf in leaves]
[('a.b', 'x'), ('items[0].sku', 's1'), ('items[1].sku', 2)]
>>> sel = PathSet.compile(["items[].sku"], "rule.paths")
>>> [leaf.path for leaf in leaves if sel.matches(leaf.key)]
['items[0].sku', 'items[1].sku']
>>> [leaf.path for leaf in leaves if PathSet.compile(["**.b"], "p").matches(leaf.key)]
['a.b']
>>> [leaf.path for leaf in walk({"by_email": {"bob@example.com": {"n": 1}}})]   # keys redacted
['by_email.*.n']
>>> PathSet.compile(["a..b"], "rule.paths")
Traceback (most recent call last):
...
models.errors.ValidationError: rule.paths[0]: empty segment in 'a..b'; write segments like a.b, a.*.c, **.c or items[].sku
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from models.errors import ValidationError
from models.guardrails.regex_safety import Regex, compile_internal
from models.sanitize import shown
from models.unicode_sets import IGNORABLE_CHARS, IGNORABLE_CLASS, PLAIN_DIGITS_AND_DASHES

__all__ = ["DECODED", "MAX_DEPTH", "MAX_LEAVES", "Leaf", "PathSet", "fold", "walk"]

#: Bounds of one payload walk; the gateway's own caps (docs/design.md §5) are lower.
MAX_LEAVES = 10_000
MAX_DEPTH = 32
_MEMO_SIZE = 4_096

_KEY = "\x00"  # marks an object key in a leaf's matching key
_ELEM = "\x01"  # marks an array element
_CLEAN = str.maketrans({_KEY: "\ufffd", _ELEM: "\ufffd"})
_SEGMENT = re.compile(r"(\*\*|\*|[^.\[\]*]+)((?:\[\])*)\Z")
_GLOB = f"(?:{_KEY}[^{_KEY}{_ELEM}]*|{_ELEM})*"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$:/ -]{1,64}")
_LONG_DIGITS = re.compile(r"\d{6}")


class _Decoded(str):
    """A path part no payload key can be (keys are plain ``str``)."""

    __slots__ = ()


#: The last part of a :class:`Leaf` standing for text decoded from its value (base64: pattern and PII
#: scan, :mod:`models.guardrails.decode`); its path reads ``a.b (base64)``.
DECODED: str = _Decoded("base64")


class Leaf(NamedTuple):
    """One scalar of a payload: ``key`` is for matching, :attr:`path` for people."""

    key: str
    parts: tuple[str | int, ...]
    #: The nearest object key (``sku`` for ``items[0].sku``, ``tags`` for ``tags[2]``).
    name: str
    value: str | int | float

    @property
    def path(self) -> str:
        """``a.b[2].c``, with keys that may themselves be personal data (an e-mail address used
        as a map key, a long number, a token) shown as ``*`` — paths end up in verdicts."""
        out = ""
        for part in self.parts:
            if isinstance(part, int):
                out += f"[{part}]"
            elif type(part) is _Decoded:
                out += f" ({DECODED})"
            else:
                shown = (
                    part if _PLAIN_KEY.fullmatch(part) and not _LONG_DIGITS.search(part) else "*"
                )
                out = f"{out}.{shown}" if out else shown
        return out


_leaf = tuple.__new__  # builds a Leaf without the Python-level __new__ (the hot path)

#: Invisible characters a word can hide behind: every Unicode default-ignorable code point
#: (zero-width spaces and joiners, bidi controls, the combining grapheme joiner, variation
#: selectors, Hangul fillers, tags; round 11 of the outside attack runs hid an AWS key, a card
#: number and ``DROP TABLE`` behind U+034F, U+FE0F, U+3164 and U+E0100).
_INVISIBLE = re.compile(f"[{IGNORABLE_CLASS}]")


#: Characters NFKC may *add* in one payload walk. NFKC can expand a character 18 times
#: (U+FDFA), and a 1.8 MB string of it took ≈ 0.6 s to fold for one rate-limit token, delaying
#: another tenant's verdicts past 5 s (Dec 4 attack run, round 7); text that does not grow
#: (accents, fullwidth forms, CJK) folds at ≈ 4 ns a character and costs no budget. Past the
#: budget a value is still folded lightly (:data:`_LIGHT`: fullwidth forms and odd spaces to
#: ASCII, invisible characters removed — one C-level pass, never longer), so padding that
#: spends the budget cannot hide a fullwidth card number after it (round 8).
FOLD_BUDGET = 16_384
#: Input characters folded at a time while the budget lasts.
_FOLD_CHUNK = 256
#: The light fold: fullwidth ASCII forms (U+FF01–U+FF5E) and the ideographic space to ASCII,
#: no-break and other spaces to a space, digits of every script and dashes to ASCII, invisible
#: characters removed.
_LIGHT: dict[int, int | None] = {0xFF01 + i: 0x21 + i for i in range(94)}
_LIGHT.update(PLAIN_DIGITS_AND_DASHES)
_LIGHT.update({c: 0x20 for c in (0x00A0, 0x1680, 0x202F, 0x205F, 0x3000, *range(0x2000, 0x200B))})
_LIGHT.update(dict.fromkeys(map(ord, IGNORABLE_CHARS)))


def fold(text: str, budget: list[int] | None = None) -> str:
    """``text`` as pattern and PII guardrails read it: plain ASCII as it is (the common case,
    one C-level check); anything else NFKC-normalised, invisible format characters removed —
    with ``budget`` (a one-item list, the folded characters left, decremented), only while it
    lasts, chunk by chunk, the rest as sent.

    >>> fold("DROP\u00a0TABLE"), fold("DR\u200bOP TABLE"), fold("\uff14\uff11\uff11\uff11")
    ('DROP TABLE', 'DROP TABLE', '4111')
    >>> left = [40]   # one chunk of 256 characters is folded, the rest folded lightly
    >>> out = fold("\ufdfa" * 300 + "\uff14", left)
    >>> len(out), left[0] <= 0, out.endswith("\ufdfa4")
    (4653, True, True)
    >>> left = [40]   # text that does not grow costs no budget
    >>> fold("\u00e9" * 5000 + "\uff14", left)[-1], left[0]
    ('4', 40)
    """
    if text.isascii():
        return text
    if budget is None:
        return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(
            PLAIN_DIGITS_AND_DASHES)
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n and budget[0] > 0:
        raw = text[i:i + _FOLD_CHUNK]
        piece = _INVISIBLE.sub("", unicodedata.normalize("NFKC", raw)).translate(
            PLAIN_DIGITS_AND_DASHES)
        budget[0] -= max(len(piece) - len(raw), 0)  # only what NFKC added
        parts.append(piece)
        i += _FOLD_CHUNK
    if i < n:
        parts.append(text[i:].translate(_LIGHT))
    return "".join(parts)


def walk(payload: Mapping[str, Any], *, max_leaves: int = MAX_LEAVES) -> tuple[Leaf, ...]:
    """All string and number values of ``payload`` (booleans and nulls carry no content)."""
    out: list[Leaf] = []
    _walk(payload, "", (), "", out, max_leaves, 0, [FOLD_BUDGET])
    return tuple(out)


#: Integral floats below this magnitude are the integers they equal (what RFC 8785, and so the
#: event's signature, makes of them: ``378282246310005.0`` and ``3.78282246310005e14`` sign as
#: ``378282246310005``); the guardrails read them as those integers (round 11 of the outside
#: attack runs: the float forms of a card number passed the card detector the integer failed).
_EXACT = float(2**53)


def _walk(
    node: Any,
    key: str,
    parts: tuple[str | int, ...],
    name: str,
    out: list[Leaf],
    cap: int,
    depth: int,
    budget: list[int],
) -> None:
    """Scalars are appended in the loop (no call per leaf); containers recurse. ``budget``:
    the walk's folded characters left (:data:`FOLD_BUDGET`)."""
    if len(out) >= cap or depth > MAX_DEPTH:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            ks = k if isinstance(k, str) else str(k)
            clean = ks.translate(_CLEAN) if _KEY in ks or _ELEM in ks else ks
            if isinstance(v, (str, int, float)):
                if v is not True and v is not False:
                    if type(v) is str and not v.isascii():
                        v = fold(v, budget)
                    elif type(v) is float and v.is_integer() and -_EXACT < v < _EXACT:
                        v = int(v)  # one number, as signed: 12.0, 1.2e1 and 12 are 12
                    out.append(_leaf(Leaf, (key + _KEY + clean, parts + (ks,), ks, v)))
            elif v is not None:
                _walk(v, key + _KEY + clean, parts + (ks,), ks, out, cap, depth + 1, budget)
    elif isinstance(node, list):
        sub = key + _ELEM
        for i, v in enumerate(node):
            if isinstance(v, (str, int, float)):
                if v is not True and v is not False:
                    if type(v) is str and not v.isascii():
                        v = fold(v, budget)
                    elif type(v) is float and v.is_integer() and -_EXACT < v < _EXACT:
                        v = int(v)
                    out.append(_leaf(Leaf, (sub, parts + (i,), name, v)))
            elif v is not None:
                _walk(v, sub, parts + (i,), name, out, cap, depth + 1, budget)
    del out[cap:]


def _compile_one(text: str, field: str) -> str:
    hint = "write segments like a.b, a.*.c, **.c or items[].sku"
    if not isinstance(text, str) or not text or len(text) > 256:
        raise ValidationError(f"{field}: a path must be a string of 1 to 256 characters", field)
    parts: list[str] = []
    segments = text.split(".")
    for n, segment in enumerate(segments):
        if not segment:
            raise ValidationError(f"{field}: empty segment in {shown(text, 80)}; {hint}", field)
        m = _SEGMENT.match(segment)
        if m is None or (m.group(1) == "**" and m.group(2)):
            raise ValidationError(f"{field}: bad segment {shown(segment)} in {shown(text, 80)}; {hint}", field)
        head, arrays = m.group(1), len(m.group(2)) // 2
        if head == "**":
            parts.append(_GLOB)
            parts.append(_ELEM * arrays)
            continue
        if head == "*":
            parts.append(f"{_KEY}[^{_KEY}{_ELEM}]*")
        else:
            parts.append(_KEY + re.escape(head))
        if n < len(segments) - 1:  # an array between keys is written
            parts.append(_ELEM * arrays)
        else:  # the value at the path, or the elements of the array there (any depth):
            # ``sql`` selects ``{"sql": ["DROP TABLE"]}`` too (round 11 of the outside attack
            # runs); ``items[]`` needs at least one array level
            parts.append(f"{_ELEM}{{{arrays},}}" if arrays else f"{_ELEM}*")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class PathSet:
    """A compiled set of paths; ``matches`` takes a :attr:`Leaf.key`.

    Answers are memoized per key (bounded): an agent sends the same payload shapes over and
    over, so after the first events a match is one dict lookup."""

    sources: tuple[str, ...]
    #: The paths as one RE2 pattern (globs come from tenants: never Python's ``re``).
    pattern: Regex | None
    everything: bool
    _memo: dict[str, bool] = field(default_factory=dict, compare=False, repr=False, hash=False)

    @classmethod
    def compile(cls, paths: Sequence[str], where: str, *, exact_case: bool = False) -> PathSet:
        """Compile ``paths``; errors name ``where[i]`` (the dotted path of the bad entry).

        Key names match whatever their case (Unicode case folding: ``sql`` selects ``SQL``,
        ``Sql`` and ``ſql`` — keys many JSON readers bind to the same field); ``exact_case`` for
        a set that *excludes* values (a case variant of an excluded key is not excluded)."""
        compiled = [_compile_one(p, f"{where}[{i}]") for i, p in enumerate(paths)]
        everything = "**" in paths
        flags = "" if exact_case else "(?i)"
        pattern = (
            compile_internal(flags + "|".join(f"(?:{c})" for c in compiled), where)
            if compiled else None
        )
        return cls(tuple(paths), None if everything else pattern, everything)

    def matches(self, key: str) -> bool:
        if self.everything:
            return True
        hit = self._memo.get(key)
        if hit is None:
            hit = self.pattern is not None and self.pattern.fullmatch(
                key.encode("utf-8", "replace")
            )
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = hit
        return hit

    def __bool__(self) -> bool:
        return bool(self.sources)
