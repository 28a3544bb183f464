"""Load-time checks that keep author-written regexes from backtracking catastrophically.

Python's ``re`` has no time limit, so the guards are structural. At policy load a pattern
is refused when

- a variable-count quantifier (other than ``?``) sits inside an unbounded one (``(a+)+``,
  ``(\\w+\\s?)*``, ``(x{1,5})+``): exponential time on a near miss. Atomic groups
  ``(?>...)`` and possessive quantifiers ``a++`` do not backtrack and are accepted;
- it starts with an unbounded repeat (``.*x``, ``\\w+@``, ``(a|b)*c``): ``search`` retries at
  every position, each retry scanning to the end — quadratic, tens of seconds on 60 K
  characters. ``\\b\\w+@`` or a literal first is linear.

At scan time every value is cut to ``max_scan_chars`` (16 K by default), which bounds what
is left: a repeat that spans many start positions (``foo.*bar`` over many ``foo`` and no
``bar``, ``\\b(?>\\w+\\s?)*!``) is still quadratic, about a second at 16 K. A hard time
limit per match would need the third-party ``regex`` module (``timeout=``).

>>> compile_safe(r"(?i)\\bdrop\\s+table\\b", "rule.regex").search("DROP  TABLE users") is not None
True
>>> compile_safe(r"(a+)+$", "rule.regex")
Traceback (most recent call last):
...
models.errors.ValidationError: rule.regex nests a variable quantifier inside an unbounded one ((a+)+, (x{1,5})*), which can backtrack for a very long time; use a possessive quantifier (a++) or an atomic group (?>...), or drop the inner quantifier
>>> compile_safe(r"\\b(?:[a-z0-9]++\\.)+[a-z]{2,}", "rule.regex").pattern
'\\\\b(?:[a-z0-9]++\\\\.)+[a-z]{2,}'
>>> compile_safe(r".*password", "rule.regex")
Traceback (most recent call last):
...
models.errors.ValidationError: rule.regex starts with an unbounded repeat (.*, \\w+, (a|b)*), which makes a search take quadratic time on long values; start with a literal, \\b or ^ (a search finds matches anywhere, so a leading .* is never needed)
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from models.errors import ValidationError

__all__ = ["MAX_PATTERN_CHARS", "compile_safe"]

MAX_PATTERN_CHARS = 1_000
#: A bounded repeat above this many is treated like an unbounded one.
_BIG = 100

_parser: Any = importlib.import_module("re._parser")
_REPEATS = ("MAX_REPEAT", "MIN_REPEAT")
_NO_BACKTRACK = ("ATOMIC_GROUP", "POSSESSIVE_REPEAT")


def _subpatterns(value: Any) -> list[Any]:
    if isinstance(value, _parser.SubPattern):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for item in value for s in _subpatterns(item)]
    return []


def _nested(items: Any, inside_unbounded: bool) -> bool:
    """Is there a variable quantifier inside an unbounded one (exponential backtracking)?"""
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, sub = av
            unbounded = hi == _parser.MAXREPEAT or hi > _BIG
            if inside_unbounded and hi > 1 and hi != lo:
                return True
            if _nested(sub, inside_unbounded or unbounded):
                return True
        elif name in _NO_BACKTRACK:
            # never re-entered once matched: its inside starts a fresh context
            if any(_nested(sub, False) for sub in _subpatterns(av)):
                return True
        elif any(_nested(sub, inside_unbounded) for sub in _subpatterns(av)):
            return True
    return False


def _leading_unbounded(items: Any) -> bool | None:
    """Does an unbounded repeat come before any literal or anchor (True), or a literal or an
    anchor first (False)? None: undecided (only single characters and small repeats)."""
    for op, av in items:
        name = str(op)
        if name in ("LITERAL", "AT"):
            return False
        if name in _REPEATS or name == "POSSESSIVE_REPEAT":
            lo, hi, sub = av
            if hi == _parser.MAXREPEAT or hi > _BIG:
                return True
            inner = _leading_unbounded(sub)
            if inner or (inner is False and lo > 0):
                return inner
        elif name == "BRANCH":
            firsts = [_leading_unbounded(alt) for alt in av[1]]
            if any(firsts):
                return True
            if all(f is False for f in firsts):
                return False
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            inner = _leading_unbounded(_subpatterns(av)[0])
            if inner is not None:
                return inner
    return None


def compile_safe(pattern: str, field: str, flags: int = 0) -> re.Pattern[str]:
    """Compile an author's regex or raise :class:`ValidationError` naming ``field``."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise ValidationError(
            f"{field} must be a regex of 1 to {MAX_PATTERN_CHARS} characters", field
        )
    try:
        compiled = re.compile(pattern, flags)
        tree = _parser.parse(pattern, flags)
    except re.error as exc:
        raise ValidationError(f"{field} is not a valid regex: {exc}", field) from None
    if _nested(tree, False):
        raise ValidationError(
            f"{field} nests a variable quantifier inside an unbounded one ((a+)+, (x{{1,5}})*), which can "
            "backtrack for a very long time; use a possessive quantifier (a++) or an atomic "
            "group (?>...), or drop the inner quantifier",
            field,
        )
    if _leading_unbounded(tree):
        raise ValidationError(
            f"{field} starts with an unbounded repeat (.*, \\w+, (a|b)*), which makes a search "
            "take quadratic time on long values; start with a literal, \\b or ^ (a search "
            "finds matches anywhere, so a leading .* is never needed)",
            field,
        )
    return compiled
