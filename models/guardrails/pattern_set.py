r"""A policy's pattern rules as compiled RE2 sets: a prefilter that scans all values of a
batch at once, so most batches (no rule matches anything) cost one scan instead of one search
per rule and value.

An RE2 set (``re2.Set``, RE2's ``RE2::Set``) runs many patterns in one linear-time automaton
and answers the indices of those that match. For each *subset* of rules that read a value (the
rules whose paths select it), one set of those rules in multi-line mode is built on first use
and kept with the rule tuple (:func:`rule_set`; a policy's rules are one tuple shared by all
its overrides, a new policy version is a new tuple). It is searched over the values joined by
``\n``: in multi-line mode ``^`` and ``$`` also match at the joins, so a rule that matches a
value also matches the joined text (a match may also span two values: a false alarm). Each
rule the prefilter flags is then searched value by value with the rule's own
:class:`~models.guardrails.regex_safety.Regex` — the reference's answer. Each rule is compiled
as the rule itself compiles it (``(?i:…)`` for ``ignore_case``, :func:`re2.escape` for
literals). A rule whose text could turn multi-line off or anchors at the very start or end
(``(?-m)``, ``\A``, ``\z``) is left out of the prefilter and always searched value by value,
as are negated rules (not matching is what they report), number ranges (no pattern) and the
built-in rules (they have their own prefilter, :func:`models.guardrails.pattern.builtin_scope`,
which switches off the ones an event cannot match — in the sets, each combination of them would
be another subset to compile).

Index 0 of each set is the empty pattern, which matches every text: an answer without it
means RE2 could not finish (a set's automaton cannot fall back to RE2's NFA when its memory
runs out) — never read as "no match": every rule of the subset is then searched. A set RE2
cannot build is not used either. Memory: a set may use 256 KB per rule it holds (what each
rule's own regex may use), at most :data:`models.guardrails.re2_set.SET_MAX_MEM`; at most 32 sets are kept per policy
(more subsets are built, used and dropped), for the last 64 rule tuples a worker used.

Cost: a subset's set is the sum of its rules' programs, and a value is scanned by the set of
exactly the rules its budget charge paid for (:class:`~models.guardrails.budget.ScanBudget`),
so the prefilter's worst case stays proportional to the steps charged. At its worst (hostile
text whose automaton never settles) a set step measured 30–50 ns where a single pattern on
RE2's NFA takes ~15 ns, so values longer than :data:`models.guardrails.batch.SET_MAX_BYTES` skip
the prefilter and are searched rule by rule as before.

>>> from models.guardrails.pattern import PatternConfig, parse_pattern
>>> cfg = parse_pattern({"rules": [{"id": "a", "regex": "^drop"},
...                                {"id": "b", "literal": "X.Y", "ignore_case": True}],
...                      "builtin_rules": False}, "p", PatternConfig())
>>> rs = rule_set(cfg.rules)
>>> sorted(rs.candidates((0, 1), [b"keep", b"drop it"])), sorted(rs.candidates((1,), [b"x.y"]))
([0], [1])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import re2

from models.guardrails.pattern_builtin import BUILTIN_PREFIX
from models.guardrails.re2_set import search_set

if TYPE_CHECKING:
    from models.guardrails.pattern import PatternRule

__all__ = ["RuleSet", "rule_set"]

#: Escapes in a rule's text that anchor at the very start or end of the text.
_TEXT_ANCHORS = ("\\A", "\\z")
_CACHE_SIZE = 64
#: Prefilter sets kept per rule tuple (one per distinct subset of rules reading a value).
_MAX_SUBSETS = 32
#: Leaf keys whose readers are remembered per rule tuple.
_MAX_READERS = 8_192
_EMPTY: frozenset[int] = frozenset()


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


@dataclass(slots=True)
class RuleSet:
    """Prefilter sets of a rule tuple, one per subset of its rules (the rules that read a
    value), built on first use; rule ``i`` of a subset ``(i, j, …)`` is set index
    ``position + 1``."""

    rules: tuple[PatternRule, ...]
    sources: list[str]
    #: Rules always checked value by value (not in the joined prefilter).
    always: frozenset[int]
    _sets: dict[tuple[int, ...], Any | None]
    #: disabled rule ids -> leaf key -> indices of the enabled rules whose paths select it.
    _readers: dict[tuple[str, ...], dict[str, tuple[int, ...]]]

    @classmethod
    def build(cls, rules: tuple[PatternRule, ...]) -> RuleSet:
        sources = [_source(r) for r in rules]
        always = frozenset(
            i for i, (r, src) in enumerate(zip(rules, sources, strict=True))
            if (r.kind == "regex" and not _joinable(src)) or r.negate or r.kind == "range"
            or r.id.startswith(BUILTIN_PREFIX)
        )
        return cls(rules, sources, always, {}, {})

    def readers(self, disabled: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
        """Leaf key -> the rules (not in ``disabled``) whose paths select it, in rule order:
        a memo, filled by :meth:`read_by` (an agent sends the same payload shapes over and
        over, so most keys are found in it)."""
        memo = self._readers.get(disabled)
        if memo is None or len(memo) >= _MAX_READERS:
            memo = self._readers[disabled] = {}
        return memo

    def read_by(self, key: str, disabled: tuple[str, ...]) -> tuple[int, ...]:
        """The rules (not in ``disabled``) whose paths select a leaf with this key; memoized."""
        hit = tuple(
            i for i, r in enumerate(self.rules) if r.id not in disabled and r.paths.matches(key)
        )
        self.readers(disabled)[key] = hit
        return hit

    def _set(self, subset: tuple[int, ...]) -> Any | None:
        if subset in self._sets:
            return self._sets[subset]
        built = search_set([f"(?m:{self.sources[i]})" for i in subset])
        if len(self._sets) < _MAX_SUBSETS:
            self._sets[subset] = built
        return built

    def candidates(self, subset: tuple[int, ...], values: Sequence[bytes]) -> frozenset[int]:
        """The rules of ``subset`` that may match one of ``values`` (a superset of those
        that do): one scan of the values joined by ``\\n``."""
        if not values:
            return _EMPTY
        joinable = tuple(i for i in subset if i not in self.always)
        maybe = self.always.intersection(subset)
        if not joinable:
            return maybe
        compiled = self._set(joinable)
        if compiled is None:
            return frozenset(subset)
        got = compiled.Match(b"\n".join(values))
        if not got or got[0] != 0:
            return frozenset(subset)  # RE2 could not finish: check them all
        return maybe.union(joinable[k - 1] for k in got[1:])


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
