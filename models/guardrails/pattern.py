"""Pattern guardrail: author-written regex or literal rules over payload values picked by path.

Each rule has an ``id``, ``paths`` (see :mod:`models.guardrails.paths`; default ``["**"]``),
exactly one of ``regex``, ``literal`` or a number range (``min`` and/or ``max``: it reports a
number — or a text that is a plain number — outside ``[min, max]``, a hard cap such as
``amount <= 500``), optional ``ignore_case``, ``negate`` (regex and literal rules: report a value
that does *not* match — an allow-list, such as recipients only at ``@acme.com``), ``action``
(default: the guardrail's) and ``description``. Regexes are compiled once at policy load on RE2, a linear-time
engine (:mod:`models.guardrails.regex_safety`), and refused when RE2 cannot run them; each value
is cut to ``max_scan_chars`` before scanning. Strings and numbers are scanned (numbers as their
JSON text); one reason per matching rule.

The work of one scan is charged to the event's
:class:`~models.guardrails.budget.ScanBudget` in steps (bytes scanned × the pattern's program
size, RE2's worst case), so one tenant's events cannot hold the shared worker. When the budget
runs out before every rule has run, the rules not run cannot vouch for the event, so it gets a
``pattern.scan_limit`` reason with the strictest action among them (fail closed).

>>> cfg = parse_pattern({"rules": [{"id": "drop", "paths": ["sql", "**.query"],
...                                 "regex": "(?i)\\\\bdrop\\\\s+table\\\\b", "action": "reject"}],
...                      "builtin_rules": False}, "guardrails.pattern", PatternConfig())
>>> r, = check_pattern(cfg, walk({"sql": "DROP TABLE users", "note": "drop table"}))
>>> (r.action, r.detail["rule"], r.detail["paths"], r.detail["count"])
('reject', 'pattern.drop', ['sql'], 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

import re2

from models.errors import ValidationError
from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    as_str,
    as_str_list,
    as_table,
    check_keys,
    forbid_keys,
    ints,
    join,
)
from models.guardrails.budget import ScanBudget
from models.guardrails.paths import Leaf, PathSet, walk
from models.guardrails.pattern_builtin import BUILTIN_CHECKS, BUILTIN_RULES
from models.guardrails.re2_set import search_set
from models.guardrails.redact import MAX_EXAMPLES
from models.guardrails.regex_safety import Regex, compile_literal, compile_safe
from models.sanitize import shown
from models.verdict import Reason, strictest

__all__ = [
    "NAME",
    "SOURCE",
    "Encoded",
    "PatternConfig",
    "PatternRule",
    "builtin_scope",
    "check_pattern",
    "encoded",
    "parse_pattern",
    "pattern_to_dict",
    "rule_reason",
    "scan_limit_reason",
    "walk",
]

NAME = "pattern"
SOURCE = f"guardrail:{NAME}"
_KEYS = ("enabled", "action", "rules", "disabled_rules", "max_scan_chars", "builtin_rules")
_RULE_KEYS = ("id", "description", "paths", "regex", "literal", "min", "max", "ignore_case",
              "negate", "action")
#: Largest magnitude of a range bound (the gateway refuses numbers past 1e15 anyway).
_BOUND_MAX = 1e15
_MAX_RULES = 256


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A range rule's matcher, with a :class:`Regex`'s interface: ``search`` is true for a
    value outside ``[low, high]`` — and, failing closed, for any value at the rule's paths that
    is not a plain decimal number (``" 9000 "``, ``"+9000"``, ``"0x3B9ACA00"``, ``"1,000,000"``,
    ``"$9000"``, ``"NaN"``, ``true``: what some parser downstream may still read as a number;
    an attack run got each past a cap that skipped them).

    >>> r = NumberRange(None, 500.0)
    >>> r.search(b"498.5"), r.search(b"500.01"), r.search(b"1e+20"), r.search(b" 9000 ")
    (False, True, True, True)
    """

    low: float | None
    high: float | None
    program_size: int = 1

    def search(self, data: bytes) -> bool:
        if len(data) > 64 or _PLAIN_NUMBER.fullmatch(data) is None:
            return True
        value = float(data)  # past a double's range: ±inf, beyond any bound
        return (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high)

    def cost(self, n_bytes: int) -> int:
        return min(n_bytes, 64)


#: A plain decimal number, as JSON writes one (and Python's repr of a float: ``1e+20``).
_PLAIN_NUMBER = re2.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class PatternRule:
    id: str
    paths: PathSet
    #: ``"regex"``, ``"literal"`` or ``"range"``; ``text`` is what the author wrote (a range:
    #: ``min..max``, either side empty when not set).
    kind: str
    text: str
    ignore_case: bool
    compiled: Regex | NumberRange
    action: str | None = None
    description: str = ""
    #: Report a value that does not match (regex and literal rules: an allow-list).
    negate: bool = False

    def hit(self, data: bytes, cut: bool = False) -> bool:
        """Does this value count for the rule (a match, or a non-match when negated)? A
        negated rule counts a value cut at ``max_scan_chars`` (its end was not seen: a match
        anchored there proves nothing — fail closed)."""
        if self.negate:
            return cut or not self.compiled.search(data)
        return self.compiled.search(data)


@dataclass(frozen=True, slots=True)
class PatternConfig:
    enabled: bool = True
    action: str = "flag"
    #: The rules in force: the policy's own, then the built-in ones (when ``builtin_rules``).
    rules: tuple[PatternRule, ...] = ()
    #: Rule ids switched off (typically per service or priority).
    disabled_rules: tuple[str, ...] = ()
    #: Values are cut to this many characters before scanning (bounds polynomial regexes).
    max_scan_chars: int = 16_384
    #: Whether the built-in rules (:mod:`models.guardrails.pattern_builtin`) run (after the
    #: policy's own).
    builtin_rules: bool = True


def _rule(value: Any, path: str) -> PatternRule:
    table = as_table(value, path)
    check_keys(table, _RULE_KEYS, path)
    if "id" not in table:
        raise ValidationError(
            f"{join(path, 'id')} is required (a short name for the rule)", join(path, "id")
        )
    rule_id = as_str(table["id"], join(path, "id"), max_chars=64, name_like=True)
    ranged = "min" in table or "max" in table
    if ("regex" in table) + ("literal" in table) + ranged != 1:
        raise ValidationError(f"{path} needs exactly one of regex, literal, or min/max (a "
                              "number range)", join(path, "regex"))
    f = Fields(table, path)
    ignore_case = f.get("ignore_case", False, as_bool)
    negate = f.get("negate", False, as_bool)
    compiled: Regex | NumberRange
    if "regex" in table:
        kind, text = "regex", str(table["regex"])
        compiled = compile_safe(table["regex"], join(path, "regex"), ignore_case=ignore_case)
    elif "literal" in table:
        kind, text = "literal", as_str(table["literal"], join(path, "literal"), max_chars=1_000)
        compiled = compile_literal(text, ignore_case=ignore_case, field=join(path, "literal"))
    else:
        low, high = _bound(table, "min", path), _bound(table, "max", path)
        if low is not None and high is not None and low > high:
            raise ValidationError(f"{join(path, 'min')} ({low:g}) is above max ({high:g})",
                                  join(path, "min"))
        for key in ("negate", "ignore_case"):
            if key in table:
                raise ValidationError(f"{join(path, key)} is for regex and literal rules; a "
                                      "range rule reports numbers outside [min, max]",
                                      join(path, key))
        kind = "range"
        text = f"{'' if low is None else f'{low:g}'}..{'' if high is None else f'{high:g}'}"
        compiled = NumberRange(low, high)
    everything: tuple[str, ...] = ("**",)
    paths = f.get("paths", everything, lambda v, p: as_str_list(v, p, max_items=64))
    if not paths:
        raise ValidationError(
            f'{join(path, "paths")} must not be empty (use ["**"])', join(path, "paths")
        )
    return PatternRule(
        id=rule_id,
        paths=PathSet.compile(paths, join(path, "paths")),
        kind=kind,
        text=text,
        ignore_case=ignore_case,
        compiled=compiled,
        action=f.get("action", None, as_action),
        description=f.get("description", "", as_str),
        negate=negate,
    )


def _bound(table: Mapping[str, Any], key: str, path: str) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            -_BOUND_MAX <= value <= _BOUND_MAX):
        raise ValidationError(f"{join(path, key)} must be a number from -1e15 to 1e15, got "
                              f"{shown(value)}", join(path, key))
    return float(value)


def _rules(value: Any, path: str) -> tuple[PatternRule, ...]:
    if not isinstance(value, list) or len(value) > _MAX_RULES:
        raise ValidationError(f"{path} must be an array of at most {_MAX_RULES} tables", path)
    rules = tuple(_rule(item, f"{path}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.id in seen:
            raise ValidationError(f"{path}[{i}].id {shown(rule.id)} is used twice", f"{path}[{i}].id")
        seen.add(rule.id)
    return rules


def _builtin() -> tuple[PatternRule, ...]:
    global _BUILTIN
    if _BUILTIN is None:
        rules = [_rule({**r, "ignore_case": True}, f"builtin[{i}]")
                 for i, r in enumerate(BUILTIN_RULES)]
        # a built-in rule with a check: its regex shortlists, the check decides
        _BUILTIN = tuple(
            replace(r, compiled=replace(r.compiled, confirm=BUILTIN_CHECKS[r.id]))
            if r.id in BUILTIN_CHECKS and isinstance(r.compiled, Regex) else r for r in rules)
    return _BUILTIN


_BUILTIN: tuple[PatternRule, ...] | None = None


def _own(rules: tuple[PatternRule, ...]) -> tuple[PatternRule, ...]:
    """The policy's own rules (the built-in ones are the shared objects of :func:`_builtin`)."""
    builtin = {id(r) for r in _builtin()}
    return tuple(r for r in rules if id(r) not in builtin)


#: The built-in rules as one RE2 set (:func:`models.guardrails.pattern_set.search_set`): one
#: search over an event's values joined tells which built-in rules can match any of them (the
#: usual event: none, and it skips them all — ≈ 15 µs a rule per event on the benchmark's
#: payloads). Multi-line (``(?m:…)``), as the author rules' prefilter: the values are joined by
#: ``\n``, and a rule anchored at a value's end (``DELETE FROM t$``) must match there too. Built
#: on first use; ``False`` when RE2 refused it (then every built-in rule runs).
_BUILTIN_SET: Any = None
#: The same rules as one RE2 program: on long texts its search (stopping at the first match)
#: is faster than the set's (2 KB of plain text: 7.7 against 16.4 µs; 170 bytes: 4.2 against
#: 2.6), so a text longer than :data:`_SEARCH_FIRST` is searched first and the set asked only
#: when something matched.
_ANY_BUILTIN = re2.compile("(?m:" + "|".join(f"(?i:{r['regex']})" for r in BUILTIN_RULES) + ")")
_SEARCH_FIRST = 1_024
_VALUE = itemgetter(Leaf._fields.index("value"))
#: Configs with only some of their built-in rules, per (config, rules kept); configs live as
#: long as their policy.
_SCOPED: dict[tuple[int, tuple[int, ...]], tuple[PatternConfig, PatternConfig]] = {}


def _builtin_set() -> Any:
    global _BUILTIN_SET
    if _BUILTIN_SET is None:
        built = search_set([f"(?m:(?i:{r['regex']}))" for r in BUILTIN_RULES])
        _BUILTIN_SET = False if built is None else built
    return _BUILTIN_SET


def builtin_scope(cfg: PatternConfig, leaves: Sequence[Leaf]) -> PatternConfig:
    """``cfg`` for an event of these (decoded) leaves, with only the built-in rules that can
    match one of its values — a prefilter, so the reasons are those of ``cfg`` itself (the
    values joined by newlines, each cut to ``max_scan_chars`` as the rules read it, can only
    add matches across values, which the rules then do not confirm). A built-in rule left out
    is neither run nor charged to the event's scan budget: a long harmless value that one rule
    shortlists (a price of ``$169.99``, an ``exec(`` in code) pays for that rule alone, not for
    all six (whose sum, ≈ 1,600 steps a byte, made a 16 KB value outrun the budget). Its time is
    the event's planning time, which the worker charges to the project's scanning share (one RE2
    pass over at most the event's own bytes); the built-in rules come after the policy's own,
    so when they do scan, the author's rules had the event's scan budget first."""
    builtin = _builtin()
    if not cfg.builtin_rules or not cfg.rules or cfg.rules[-1] is not builtin[-1]:
        return cfg
    found = _builtin_set()
    if found is False:
        return cfg
    limit = cfg.max_scan_chars
    # strings, floats (``169.16689662`` is an address: the rules read numbers as their text),
    # and integers long enough to be an IP address written as a number (a shorter integer has
    # no dot and no ten digits: no built-in rule can match it)
    text = "\n".join([v[:limit] if type(v) is str else repr(v) for v in map(_VALUE, leaves)
                       if type(v) is str or type(v) is float
                       or (type(v) is int and abs(v) > 99_999_999)])
    data = text.encode("utf-8", "replace")  # as the rules read values
    got = [0] if len(data) > _SEARCH_FIRST and not _ANY_BUILTIN.search(data) else found.Match(data)
    if not got or got[0] != 0:
        return cfg  # RE2 could not finish: every built-in rule runs
    keep = tuple(sorted(k - 1 for k in got[1:]))
    if len(keep) == len(builtin):
        return cfg
    key = (id(cfg), keep)
    if not keep:  # the usual event: the policy's own rules alone (none at all: no scan)
        hit = _SCOPED.get(key)
        if hit is None or hit[0] is not cfg:
            if len(_SCOPED) >= 1024:
                _SCOPED.clear()
            hit = _SCOPED[key] = (cfg, replace(cfg, rules=_own(cfg.rules)))
        return hit[1]
    hit = _SCOPED.get(key)
    if hit is None or hit[0] is not cfg:
        if len(_SCOPED) >= 1024:
            _SCOPED.clear()
        # switched off like a policy's disabled rule, the rule tuple left as it is: the batch
        # path groups events and keeps its author-rule sets per rule tuple
        off = tuple(r.id for i, r in enumerate(builtin) if i not in keep)
        hit = _SCOPED[key] = (cfg, replace(cfg, disabled_rules=cfg.disabled_rules + off))
    return hit[1]


def parse_pattern(
    table: Mapping[str, Any], path: str, base: PatternConfig, *, override: bool = False
) -> PatternConfig:
    """Apply ``table`` over ``base``; overrides switch rules off, they do not redefine them."""
    check_keys(table, _KEYS, path)
    if override:
        forbid_keys(table, ("rules", "builtin_rules"), path,
                    "define rules once; use disabled_rules per override")
    f = Fields(table, path)
    builtin = f.get("builtin_rules", base.builtin_rules, as_bool)
    own = f.get("rules", _own(base.rules), _rules)
    rules = own + (_builtin() if builtin else ())
    if builtin:
        taken = {r.id for r in own}.intersection(r["id"] for r in BUILTIN_RULES)
        if taken:
            raise ValidationError(
                f"{join(path, 'rules')}: {min(taken)!r} is a built-in rule's id; rename "
                "the rule or set builtin_rules = false", join(path, "rules"))
    disabled = f.get("disabled_rules", base.disabled_rules, as_str_list)
    known = {r.id for r in rules}
    for i, rule_id in enumerate(disabled):
        if rule_id not in known:
            where = f"{join(path, 'disabled_rules')}[{i}]"
            raise ValidationError(f"{where} names no rule: {shown(rule_id)}", where)
    return PatternConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        rules=rules,
        disabled_rules=disabled,
        max_scan_chars=f.get("max_scan_chars", base.max_scan_chars, ints(64, 1_048_576)),
        builtin_rules=builtin,
    )


def _rule_to_dict(rule: PatternRule) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rule.id, "paths": list(rule.paths.sources)}
    if isinstance(rule.compiled, NumberRange):
        if rule.compiled.low is not None:
            out["min"] = rule.compiled.low
        if rule.compiled.high is not None:
            out["max"] = rule.compiled.high
    else:
        out[rule.kind] = rule.text
    if rule.negate:
        out["negate"] = True
    if rule.ignore_case:
        out["ignore_case"] = True
    if rule.action is not None:
        out["action"] = rule.action
    if rule.description:
        out["description"] = rule.description
    return out


def pattern_to_dict(cfg: PatternConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "rules": [_rule_to_dict(r) for r in _own(cfg.rules)],
        "disabled_rules": list(cfg.disabled_rules),
        "max_scan_chars": cfg.max_scan_chars,
        "builtin_rules": cfg.builtin_rules,
    }


Encoded = dict[int, tuple[bytes, bool]]


def encoded(leaf: Leaf, limit: int, cache: Encoded, i: int) -> tuple[bytes, bool]:
    """Leaf ``i``'s value as scanned — cut to ``limit`` characters, UTF-8 (RE2 matches bytes) —
    and whether it was cut; encoded once per event and shared by every rule."""
    hit = cache.get(i)
    if hit is None:
        text = leaf.value if isinstance(leaf.value, str) else repr(leaf.value)
        cut = len(text) > limit
        hit = cache[i] = ((text[:limit] if cut else text).encode("utf-8", "replace"), cut)
    return hit


def _scan(
    rule: PatternRule,
    leaves: Sequence[Leaf],
    limit: int,
    cache: Encoded,
    budget: ScanBudget | None,
) -> tuple[int, list[str], bool, bool]:
    """(matches, example paths, a value was cut, the budget ran out before the rule finished)."""
    count, cut = 0, False
    paths: list[str] = []
    for i, leaf in enumerate(leaves):
        if not rule.paths.matches(leaf.key):
            continue
        data, was_cut = encoded(leaf, limit, cache, i)
        if budget is not None and not budget.take(rule.compiled.cost(len(data))):
            return count, paths, cut, True
        cut = cut or was_cut
        if rule.hit(data, was_cut):
            count += 1
            if len(paths) < MAX_EXAMPLES:
                paths.append(leaf.path)
    return count, paths, cut, False


def rule_reason(
    cfg: PatternConfig, rule: PatternRule, count: int, paths: list[str], cut: bool
) -> Reason:
    """The reason of a rule that matched ``count`` values (``paths``: the first examples)."""
    detail: dict[str, Any] = {
        "rule": f"{NAME}.{rule.id}",
        "kind": rule.kind,
        "count": count,
        "paths": paths,
    }
    if rule.negate:
        detail["negate"] = True  # the values counted are those that do not match
    if cut:
        detail["scanned_chars"] = cfg.max_scan_chars
    return Reason(SOURCE, rule.action or cfg.action, detail)


def scan_limit_reason(cfg: PatternConfig, skipped: Sequence[PatternRule]) -> Reason:
    """Fail closed: the rules the budget did not cover, with the strictest of their actions."""
    actions = [r.action or cfg.action for r in skipped]
    return Reason(SOURCE, strictest(actions), {
        "rule": f"{NAME}.scan_limit",
        "skipped_rules": [r.id for r in skipped][:MAX_EXAMPLES],
        "skipped": len(skipped),
        "note": "the scan budget of this event ran out before these rules finished; they "
                "cannot vouch for it, so their strictest action applies",
    })


def check_pattern(
    cfg: PatternConfig, leaves: Sequence[Leaf], budget: ScanBudget | None = None
) -> list[Reason]:
    """``leaves`` from :func:`models.guardrails.paths.walk` over the event's payload; scans
    charge ``budget`` (None: unbounded) and stop when it runs out (see the module docstring).

    One rule and one value at a time: the reference for the batch scan
    (:mod:`models.guardrails.batch`), which must find exactly the same."""
    if not cfg.enabled:
        return []
    out: list[Reason] = []
    cache: Encoded = {}
    skipped: list[PatternRule] = []
    for rule in cfg.rules:
        if rule.id in cfg.disabled_rules:
            continue
        if skipped:
            skipped.append(rule)
            continue
        count, paths, cut, ran_out = _scan(rule, leaves, cfg.max_scan_chars, cache, budget)
        if ran_out:
            skipped.append(rule)
        if count:
            out.append(rule_reason(cfg, rule, count, paths, cut))
    if skipped:
        out.append(scan_limit_reason(cfg, skipped))
    return out
