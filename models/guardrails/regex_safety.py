"""Tenant-written patterns run on RE2, a linear-time regex engine — never on Python's ``re``.

Python's ``re`` backtracks: ``\\bx(?:a|a)*y`` on ``"x" + "a" * 40`` runs for minutes, and no
structural check catches every such pattern. RE2 (the ``google-re2`` package) compiles a
pattern to an automaton and matches in time linear in the text, for every pattern it accepts.
What it cannot run in linear time it refuses to compile — backreferences (``\\1``),
lookaround (``(?=``, ``(?<=``), atomic groups (``(?>``), possessive quantifiers (``a++``) —
and such a pattern is refused at policy load with a :class:`ValidationError` naming the field.

Linear is not free: RE2's worst case (when its DFA cache overflows and it falls back to the NFA)
costs about one step per byte per instruction of the compiled program. So a pattern's program
is capped at :data:`MAX_PROGRAM_SIZE` instructions, and :class:`Regex.cost` (bytes × program
size) is what the pattern guardrail charges against its scan budget
(:class:`models.guardrails.pattern.ScanBudget`).

Matching is done on UTF-8 bytes (each payload value is encoded once, then scanned by every
rule). Differences from ``re`` an author may notice: ``\\b``, ``\\w``, ``\\d`` and ``\\s`` are
ASCII-only.

>>> compile_safe(r"(?i)\\bdrop\\s+table\\b", "rule.regex").search("DROP  TABLE users".encode())
True
>>> compile_safe(r"\\bx(?:a|a)*y", "rule.regex").search(("x" + "a" * 100_000).encode())
False
>>> compile_safe(r"(a)\\1", "rule.regex")
Traceback (most recent call last):
...
models.errors.ValidationError: rule.regex "(a)\\\\1" cannot be compiled by RE2, the linear-time engine tenant patterns run on: invalid escape sequence: "\\\\1" (RE2 has no backreferences, lookaround, atomic groups or possessive quantifiers)
>>> compile_literal("a.b", ignore_case=True).search(b"xA.By"), compile_literal("a.b").search(b"axb")
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import re2

from models.errors import ValidationError
from models.sanitize import clean_text, quoted

__all__ = [
    "MAX_PATTERN_CHARS", "MAX_PROGRAM_SIZE", "Regex", "compile_internal", "compile_literal",
    "compile_safe",
]

MAX_PATTERN_CHARS = 1_000
#: Largest compiled RE2 program accepted (instructions). ``(?i)\bdrop\s+table\b`` is 19, an
#: e-mail-like pattern ~25, ``[ab]{0,999}[ab]{0,999}c`` 4,001.
MAX_PROGRAM_SIZE = 2_000
#: RE2's memory per pattern (program + DFA cache), bytes. Small on purpose: when a pattern's DFA
#: outgrows it, RE2 falls back to its NFA, ~10-20 ns per step (byte × instruction) measured,
#: where a big DFA cache thrashing on hostile text measured 35-60 ns per step.
_MAX_MEM = 256 << 10


def _options(*, ignore_case: bool, literal: bool = False) -> Any:
    opts = re2.Options()
    opts.log_errors = False  # errors are raised, not written to stderr
    opts.never_capture = True  # only "is there a match": no submatch engine
    opts.case_sensitive = not ignore_case
    opts.literal = literal
    opts.max_mem = _MAX_MEM
    return opts


@dataclass(frozen=True, slots=True)
class Regex:
    """A compiled RE2 pattern: ``search``/``fullmatch`` over UTF-8 bytes, and its cost.

    ``confirm`` (built-in rules only, never an author's): the pattern then only shortlists,
    and a match counts when ``confirm(data, start, end)`` accepts it — a decoder for what a
    regex can only list spellings of (an IP address in any of its notations), reading at most
    a few hundred bytes around the match. The charge stays bytes × program size (RE2's worst
    case, far above what confirming a match costs per byte it reads)."""

    source: str
    #: Instructions of the compiled program: the per-byte worst case of a scan.
    program_size: int
    compiled: Any
    confirm: Callable[[bytes, int, int], bool] | None = None

    def search(self, data: bytes) -> bool:
        """Does the pattern match anywhere in ``data`` (and ``confirm`` accept one of the
        non-overlapping matches)? Linear in ``len(data)``."""
        if self.confirm is None:
            return self.compiled.search(data) is not None
        return any(self.confirm(data, m.start(), m.end())
                   for m in self.compiled.finditer(data))

    def fullmatch(self, data: bytes) -> bool:
        """Does the pattern match all of ``data``?"""
        return self.compiled.fullmatch(data) is not None

    def cost(self, n_bytes: int) -> int:
        """Worst-case steps of scanning ``n_bytes`` bytes (bytes × program size)."""
        return n_bytes * self.program_size


def _compile(pattern: str, field: str, opts: Any) -> Regex:
    try:
        compiled = re2.compile(pattern, opts)
    except re2.error as exc:
        why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        # RE2 says "<problem>: <the part of the pattern>": the part quoted as faithfully as
        # the pattern (a lookbehind's "(?<!" must not read "(?!")
        problem, sep, part = why.partition(": ")
        why = f"{clean_text(problem, 80)}: {quoted(part, 60)}" if sep else clean_text(why, 120)
        raise ValidationError(
            f"{field} {quoted(pattern)} cannot be compiled by RE2, the linear-time engine tenant "
            f"patterns run on: {why} (RE2 has no backreferences, lookaround, "
            "atomic groups or possessive quantifiers)",
            field,
        ) from None
    size = int(compiled.programsize)
    if size > MAX_PROGRAM_SIZE:
        raise ValidationError(
            f"{field} {quoted(pattern)} compiles to {size} RE2 instructions, more than "
            f"{MAX_PROGRAM_SIZE}; its "
            "scans would cost that many steps per byte (use smaller bounded repeats {m,n})",
            field,
        )
    return Regex(pattern, size, compiled)


def compile_safe(pattern: Any, field: str, *, ignore_case: bool = False) -> Regex:
    """Compile an author's regex on RE2 or raise :class:`ValidationError` naming ``field``."""
    if not isinstance(pattern, str) or not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise ValidationError(
            f"{field} must be a regex of 1 to {MAX_PATTERN_CHARS} characters", field
        )
    return _compile(pattern, field, _options(ignore_case=ignore_case))


def compile_literal(text: str, *, ignore_case: bool = False, field: str = "literal") -> Regex:
    """A literal string as an RE2 pattern (no metacharacters)."""
    return _compile(text, field, _options(ignore_case=ignore_case, literal=True))


def compile_internal(pattern: str, field: str) -> Regex:
    """A pattern Ratchet builds itself from tenant input (path globs): RE2 as well; errors
    name ``field``."""
    return _compile(pattern, field, _options(ignore_case=False))
