"""All pattern rules of a policy as one compiled RE2 set: which rules match each value, in
one scan of the value instead of one search per rule — and, first, one scan of all values of a
batch together, which most batches (no rule matches anything) never get past.

An RE2 set (``re2.Set``, RE2's ``RE2::Set``) runs every pattern in one linear-time automaton
and answers the indices of the patterns that match. Two sets are built per rule tuple, once,
and cached (:func:`rule_set`; a policy's rules are one tuple shared by all its overrides, and
a new policy version is a new tuple):

- **exact**: each rule as the rule itself compiles it (``(?i:…)`` for ``ignore_case``,
  :func:`re2.escape` for literals), searched over one value: the same answer as the rule's
  own :class:`~models.guardrails.regex_safety.Regex`.
- **joined** (a prefilter): each rule in multi-line mode, searched over all values of a batch
  joined by ``\\n``. In multi-line mode ``^`` and ``$`` also match at the joins, so a rule that
  matches a value also matches the joined text (a match may also span two values: a false
  alarm, settled by the exact set). A rule whose text could turn multi-line off or anchor at
  the very start or end (``(?-m)``, ``\\A``, ``\\z``) is left out of the prefilter and always
  checked value by value.

Index 0 of each set is the empty pattern, which matches every text: an answer without it
means RE2 could not finish (its automaton ran out of memory) — never read as "no match"; the
caller then falls back to the rules' own regexes (:meth:`RuleSet.exact_matches` returns None).
A set's program is a sum of its rules' programs (each at most 2,000 instructions, at most 256
rules), its memory capped at :data:`SET_MAX_MEM`; a set RE2 cannot build is simply not used.

>>> from models.guardrails.pattern import PatternConfig, parse_pattern
>>> cfg = parse_pattern({"rules": [{"id": "a", "regex": "^drop"},
...                                {"id": "b", "literal": "X.Y", "ignore_case": True}]},
...                     "p", PatternConfig())
>>> rs = rule_set(cfg.rules)
>>> sorted(rs.joined_candidates([b"keep", b"drop it"])), rs.exact_matches(b"a x.y drop")
([0], frozenset({1}))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import re2

if TYPE_CHECKING:
    from models.guardrails.pattern import PatternRule

__all__ = ["SET_MAX_MEM", "RuleSet", "rule_set"]

#: Memory cap of one compiled set (program + automaton cache), bytes.
SET_MAX_MEM = 32 << 20
#: Escapes in a rule's text that anchor at the very start or end of the text.
_TEXT_ANCHORS = ("\\A", "\\z")
_CACHE_SIZE = 64
_EMPTY: frozenset[int] = frozenset()


def _options() -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    opts.max_mem = SET_MAX_MEM
    return opts


def _source(rule: PatternRule) -> str:
    body = re2.escape(rule.text) if rule.kind == "literal" else rule.text
    return f"(?i:{body})" if rule.ignore_case else body


def _joinable(text: str) -> bool:
    """Can the multi-line prefilter stand in for ``text``? Not when it anchors at the text's
    ends (``\\A``, ``\\z``) or may switch multi-line off (a flag group ``(?…-…m…)``);
    conservative: an escaped ``\\\\A`` is refused too."""
    if any(a in text for a in _TEXT_ANCHORS):
        return False
    at = text.find("(?")
    while at >= 0:
        end = at + 2
        while end < len(text) and text[end] not in ":)":
            end += 1
        flags = text[at + 2:end]
        if "-" in flags and "m" in flags.partition("-")[2]:
            return False
        at = text.find("(?", at + 2)
    return True


def _build(sources: Sequence[str]) -> Any | None:
    """A search set of the empty pattern then ``sources``; None when RE2 refuses it."""
    try:
        s = re2.Set.SearchSet(_options())
        s.Add("")
        for src in sources:
            s.Add(src)
        s.Compile()
    except re2.error:
        return None
    return s


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Compiled sets of a rule tuple; rule ``i`` is set index ``i + 1``."""

    size: int
    exact: Any | None
    joined: Any | None
    #: Rules always checked value by value (not in the joined prefilter).
    always: frozenset[int]

    @classmethod
    def build(cls, rules: Sequence[PatternRule]) -> RuleSet:
        sources = [_source(r) for r in rules]
        always = frozenset(
            i for i, (r, src) in enumerate(zip(rules, sources, strict=True))
            if r.kind == "regex" and not _joinable(src)
        )
        joined = [f"(?m:{src})" if i not in always else "$^NEVER" for i, src in
                  enumerate(sources)]
        return cls(len(rules), _build(sources), _build(joined), always)

    def joined_candidates(self, values: Sequence[bytes]) -> frozenset[int]:
        """Rules that may match one of ``values`` (a superset of those that do)."""
        if not values:
            return _EMPTY
        if self.joined is None:
            return frozenset(range(self.size))
        got = self.joined.Match(b"\n".join(values))
        if not got or got[0] != 0:
            return frozenset(range(self.size))  # RE2 could not finish: check them all
        return self.always.union(i - 1 for i in got[1:])

    def exact_matches(self, value: bytes) -> frozenset[int] | None:
        """The rules that match ``value``; None when the set cannot answer (use the rules)."""
        if self.exact is None:
            return None
        got = self.exact.Match(value)
        if not got or got[0] != 0:
            return None
        return frozenset(i - 1 for i in got[1:])


_cache: dict[int, tuple[tuple[PatternRule, ...], RuleSet]] = {}


def rule_set(rules: tuple[PatternRule, ...]) -> RuleSet:
    """The compiled set of ``rules`` (cached by identity; the tuple is kept alive with it)."""
    hit = _cache.get(id(rules))
    if hit is not None and hit[0] is rules:
        return hit[1]
    built = RuleSet.build(rules)
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[id(rules)] = (rules, built)
    return built
