"""Values: a number far outside the range a call's field ever took, or a new value in a field
that only ever took a few.

The chains and the step order judge *which* call an agent makes and in which shape; a call can
be usual in every way they see and still carry a harmful value — a payout of 98,000 where every
payout was 90–4,000, ``replicas: 0`` on a deployment always scaled to 2–5, ``dry_run: false``
where it was always true, a lead's status set to a value the agent never used. This guardrail
keeps, per agent and per *slot* (a call, ``service:action``, and a key path in its payload, array
elements collapsed: ``attendees[].email``):

- for numbers, and for the length of arrays (path ``items[#]``), the range of their *magnitude*
  (:func:`magnitude`: the power of two, signed) — ``value.range`` judges a value more than
  ``margin`` powers of two farther from zero than the range (the default 2: at least 4x past the
  largest ever seen) or more than ``margin_below`` nearer to zero (4: under a sixteenth of the
  smallest);
- for strings (longer than ``max_text`` characters: their first ``max_text`` characters and
  their length's power of two) and booleans, the set of values, as long as there are at most
  ``max_distinct`` of them (a field with more — ids, names, free text — is
  *open* and never judged) — ``value.unseen`` judges a value not in the set.

A slot is judged only once it is *settled*: seen at least ``min_support`` times, and its range
or set unchanged over the last ``min_support`` observations (a field whose range still creeps or
whose set still grows is not judged — the chance of a new value is then high). Once settled it
stays so: a value learned later (inside the margin, or after its reports) widens the range or
the set but does not open a window in which a far value would be learned unjudged. Every observation
not judged is learned; a judged one is learned once it was reported in ``learn_after`` different
runs (0: never), like the step order — never by the reports of events this rule holds itself
(its action pause or reject): a held value waits for a person, and repeating it teaches nothing
(an attack run had a payout to a new account paused three times, then allowed). An agent's hash holds at most ``VALUE_CAP`` fields; a full
one learns no new field (no new slot, no new pending report) and still judges the slots it has,
so filling it with junk keys does not switch the rule off.

The counting is atomic in Redis, per agent (``lua/guardrails.lua``); this module extracts the
observations of an event (:func:`observations`), turns what the script found into reasons
(:func:`check_values`) and holds the reference model the agreement tests compare the script
with (:class:`ValueReference`). Reasons name the key paths and the learned range, never the
value (verdicts travel to webhooks and logs).

>>> obs = observations("pay", "payout", {"amount": 98000.0, "currency": "USD", "dry": False},
...                    ValueConfig())
>>> [(o.path, o.kind) for o in obs]
[('amount', 1), ('currency', 2), ('dry', 2)]
>>> magnitude(0), magnitude(1), magnitude(98000.0), magnitude(-3)
(190, 192, 208, 63)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import xxhash

from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    check_keys,
    forbid_keys,
    ints,
    join,
)
from models.guardrails.reports import REDELIVERED_NOTE, RunReports
from models.verdict import Reason

__all__ = [
    "CATEGORY",
    "NAME",
    "RANGE",
    "REDELIVERED_VALUE",
    "SOURCE",
    "VALUE_CAP",
    "Observation",
    "ValueConfig",
    "ValueFinding",
    "ValueReference",
    "check_values",
    "magnitude",
    "observations",
    "pack_observations",
    "parse_values",
    "values_to_dict",
]

NAME = "value"
SOURCE = f"guardrail:{NAME}"
#: Observation kinds (lua/guardrails.lua reads them): a magnitude, a category's hash.
RANGE, CATEGORY = 1, 2
#: Most fields of an agent's value hash: a full one learns no new field (and still judges).
VALUE_CAP = 4_096
_KEYS = ("enabled", "action", "min_support", "margin", "margin_below", "max_distinct",
         "learn_after", "max_values", "max_text")
_TOP_ONLY = ("min_support", "margin", "margin_below", "max_distinct", "learn_after",
             "max_values", "max_text")
#: One observation as the script reads it: slot (8 bytes), kind, value.
OBSERVATION = struct.Struct("<8sBI")
#: Deepest nesting read for observations: past the gateway's own bound (16 levels), so nothing
#: an accepted payload holds is out of sight.
_MAX_DEPTH = 32
#: Highest count a slot keeps (its stored form is 32-bit).
COUNT_MAX = 2**32 - 1
#: The magnitude of zero: that of [2^-2, 2^-1) (see :func:`magnitude`).
ZERO = 190
#: Magnitudes from here up are of zero or positive numbers, below it of negative ones.
ZERO_SIDE = 128
#: Zero's magnitude read against a range of negative numbers (zero's, mirrored: -2^-2).
ZERO_MIRROR = 66


@dataclass(frozen=True, slots=True)
class ValueConfig:
    enabled: bool = True
    action: str = "flag"
    #: Observations of a slot, and observations since its range or set last changed, before
    #: it is judged.
    min_support: int = 30
    #: Powers of two above the largest learned magnitude before a number is judged.
    margin: int = 2
    #: Powers of two below the smallest learned magnitude before a number is judged (more than
    #: above: values drawn evenly from zero up reach ever smaller magnitudes).
    margin_below: int = 4
    #: Most distinct values a categorical slot learns; past that it is open (never judged).
    max_distinct: int = 8
    #: Reports (in different runs) after which a judged value is learned (0 = never).
    learn_after: int = 3
    #: Most observations read from one event (in payload order).
    max_values: int = 64
    #: Longest string read as a category, characters.
    max_text: int = 40


class Observation(NamedTuple):
    """One value of an event as the rule reads it."""

    #: The key path, array elements as ``[]``, an array's length as ``[#]``.
    path: str
    #: :data:`RANGE` (``value`` a :func:`magnitude`) or :data:`CATEGORY` (a 32-bit hash).
    kind: int
    value: int
    #: The slot (service, action, path, kind) hashed: the script's field.
    slot: bytes


@dataclass(frozen=True, slots=True)
class ValueFinding:
    """What the script found for one judged observation."""

    path: str
    kind: int
    #: Range: the learned magnitude range (:func:`magnitude`); category: distinct values, 0.
    low: int
    high: int
    #: Times the slot was learned.
    seen: int
    #: Range: the judged value's magnitude (shown to the person deciding), else None.
    judged: int | None = None


#: A redelivered event's finding (its counts are not kept): the kind only.
REDELIVERED_VALUE = ValueFinding("", 0, 0, 0, 0)


def magnitude(x: float) -> int:
    """A number's magnitude as one byte, ordered like the numbers' sizes: 192 + e for a
    positive number in [2^e, 2^(e+1)) (e clamped to -63..63), 64 - e for a negative one, and
    for zero that of a quarter (190): just below the counts that start at 1, so a count reaching
    0 is no news, and far below amounts (a zero where every amount was 2^6 and up is).

    >>> [magnitude(v) for v in (0, 0.5, 1, 3, 4000, -1, 1e300, -1e300)]
    [190, 191, 192, 193, 203, 64, 255, 1]
    """
    if x == 0:
        return ZERO
    e = abs(x).bit_length() - 1 if type(x) is int else math.frexp(abs(x))[1] - 1
    e = -63 if e < -63 else min(e, 63)
    return 192 + e if x > 0 else 64 - e


def _category(value: str | bool) -> int:
    text = ("\x01true" if value else "\x01false") if isinstance(value, bool) else value
    return xxhash.xxh32_intdigest(text.encode("utf-8", "replace"))


#: Slots seen lately: (service, action) → (path, kind) → 8 bytes; at most :data:`_SLOTS_MAX`
#: entries in all (started again when full).
_SLOTS: dict[tuple[str, str], dict[tuple[str, int], bytes]] = {}
_SLOTS_MAX = 16_384
_SLOT_ENTRIES = [0]


def _slots_of(service: str, action: str) -> dict[tuple[str, int], bytes]:
    table = _SLOTS.get((service, action))
    if table is None:
        table = _SLOTS[(service, action)] = {}
    return table


def _slot(service: str, action: str, path: str, kind: int) -> bytes:
    return xxhash.xxh3_64_digest(f"{service}\0{action}\0{path}\0{kind}".encode(
        "utf-8", "replace"))


#: Keys seen lately → how a slot's path shows them; bounded.
_KEY_TEXT: dict[str, str] = {}


def _key(k: Any) -> str:
    """A key as a slot's path shows it: keys that look like data (e-mail addresses, long
    numbers, text with spaces) as ``*``, so one slot serves them all and none is kept."""
    ks = k if isinstance(k, str) else str(k)
    if len(ks) > 40:  # checked before the cache: a long key is never kept
        return "*"
    got = _KEY_TEXT.get(ks)
    if got is None:
        got = ks
        if not ks.isascii() or "@" in ks or " " in ks or "/" in ks or sum(
                c.isdigit() for c in ks) >= 6:
            got = "*"
        if len(_KEY_TEXT) >= _SLOTS_MAX:
            _KEY_TEXT.clear()
        _KEY_TEXT[ks] = got
    return got


def observations(service: str, action: str, payload: Mapping[str, Any] | None,
                 cfg: ValueConfig) -> tuple[Observation, ...]:
    """The values of an event the rule reads, in payload order, at most ``cfg.max_values``:
    numbers (not booleans) and array lengths as magnitudes, text and booleans as categories
    (text past ``max_text`` characters by its first ones and its length), every element of an
    array folded per slot (:func:`_fold`). Nulls are skipped."""
    if not payload or type(payload) is not dict:
        return ()
    out: list[tuple[str, int, int]] = []
    _visit(payload, "", 0, out, cfg.max_values, cfg.max_text, cfg.max_distinct,
           [_MAX_ITEMS])
    if not out:
        return ()
    table = _slots_of(service, action)
    got: list[Observation] = []
    for path, kind, value in out:
        slot = table.get((path, kind))
        if slot is None:
            _SLOT_ENTRIES[0] += 1
            if _SLOT_ENTRIES[0] > _SLOTS_MAX:
                _SLOTS.clear()
                _SLOT_ENTRIES[0] = 1
                table = _slots_of(service, action)
            slot = table[(path, kind)] = _slot(service, action, path, kind)
        got.append(_observation(Observation, (path, kind, value, slot)))
    return tuple(got)


_observation = tuple.__new__  # builds an Observation without the Python-level __new__


#: Keys and elements looked at per event, read or skipped (nulls, past the value cap): the
#: gateway's own bound on a payload's values (models.events.Limits.max_payload_values), so
#: nothing an accepted event carries is out of sight — an attack run put a fourth recipient in
#: a list of which only three elements were read, and it passed.
_MAX_ITEMS = 10_000
#: Observations of one array's elements before they are folded (nested rows included).
_ROW_CAP = 10_000


def _visit(node: Any, path: str, depth: int, out: list[tuple[str, int, int]], cap: int,
           max_text: int, distinct: int, left: list[int]) -> None:
    """Append ``node``'s observations: an object's scalars first, in order, then what its
    containers hold (so a nested list cannot crowd out the fields beside it); of an array, its
    length, then every element folded per slot (:func:`_fold`). ``left``: items that may still
    be looked at."""
    if depth > _MAX_DEPTH:
        return
    if type(node) is dict:
        prefix = f"{path}." if path else ""
        later: list[tuple[Any, str]] = []
        for k, v in node.items():
            left[0] -= 1
            if len(out) >= cap or left[0] < 0:
                return
            t = type(v)
            if t is dict or t is list:
                later.append((v, prefix + _key(k)))
            else:
                _scalar(v, t, prefix + _key(k), out, max_text)
        for v, where in later:
            if len(out) >= cap or left[0] < 0:
                return
            _visit(v, where, depth + 1, out, cap, max_text, distinct, left)
    elif type(node) is list:
        out.append((f"{path}[#]", RANGE, magnitude(len(node))))
        where = f"{path}[]"
        rows: list[tuple[str, int, int]] = []
        for v in node:
            left[0] -= 1
            if left[0] < 0:
                break
            t = type(v)
            if t is dict or t is list:
                _visit(v, where, depth + 1, rows, _ROW_CAP, max_text, distinct, left)
            else:
                _scalar(v, t, where, rows, max_text)
        _fold(rows, out, cap, distinct)


def _scalar(v: Any, t: type, where: str, out: list[tuple[str, int, int]], max_text: int) -> None:
    """A scalar's observation: numbers (not booleans) as magnitudes; text and booleans as
    categories — text longer than ``max_text`` by its first ``max_text`` characters and its
    length's power of two (a long value is judged like a short one, at a bounded cost)."""
    if t is str:
        if len(v) > max_text:
            v = f"{v[:max_text]}\x00{len(v).bit_length()}"
        out.append((where, CATEGORY, _category(v)))
    elif t is bool:
        out.append((where, CATEGORY, _category(v)))
    elif t is int or (t is float and math.isfinite(v)):
        out.append((where, RANGE, magnitude(v)))


def _fold(rows: Sequence[tuple[str, int, int]], out: list[tuple[str, int, int]], cap: int,
          distinct: int) -> None:
    """An array's element observations, per slot in first-seen order: of a range, its lowest
    and highest magnitude (what the range is judged and learned by) and zero apart (zero is
    read as -2^-2 against a range of negative numbers, so it is not an extreme by its
    magnitude byte); of a category, its distinct
    values up to ``distinct + 1`` — a settled set holds at most ``distinct`` values, so of that
    many one at least is new to it if any is. Appended to ``out`` up to ``cap``."""
    lows: dict[str, int] = {}
    highs: dict[str, int] = {}
    zeros: set[str] = set()
    cats: dict[str, dict[int, None]] = {}
    order: dict[tuple[str, int], None] = {}
    for path, kind, value in rows:
        order[(path, kind)] = None
        if kind == RANGE:
            if value == ZERO:  # zero is judged mirrored against a negative range: kept apart
                zeros.add(path)
            elif path not in lows:
                lows[path] = highs[path] = value
            elif value < lows[path]:
                lows[path] = value
            elif value > highs[path]:
                highs[path] = value
        else:
            seen = cats.setdefault(path, {})
            if len(seen) <= distinct:
                seen[value] = None
    for path, kind in order:
        if kind == RANGE:
            low = lows.get(path)
            got: tuple[int, ...] = () if low is None else (
                (low,) if low == highs[path] else (low, highs[path]))
            if path in zeros:
                got += (ZERO,)
        else:
            got = tuple(cats[path])
        for value in got:
            if len(out) >= cap:
                return
            out.append((path, kind, value))


def pack_observations(obs: Sequence[Observation]) -> bytes:
    """An event's observations as the script reads them (13 bytes each)."""
    pack = OBSERVATION.pack
    return b"".join(pack(o.slot, o.kind, o.value) for o in obs)


def parse_values(
    table: Mapping[str, Any], path: str, base: ValueConfig, *, override: bool = False
) -> ValueConfig:
    """Apply ``table`` over ``base``; an override may switch the rule and set its action only."""
    check_keys(table, _KEYS, path)
    if override:
        forbid_keys(table, _TOP_ONLY, path,
                    "values are learned once per agent; set the rule's settings at the top")
    f = Fields(table, path)
    return ValueConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        min_support=f.get("min_support", base.min_support, ints(1, 1_000_000)),
        margin=f.get("margin", base.margin, ints(0, 127)),
        margin_below=f.get("margin_below", base.margin_below, ints(0, 127)),
        max_distinct=f.get("max_distinct", base.max_distinct, ints(1, 64)),
        learn_after=f.get("learn_after", base.learn_after, ints(0, 1_000_000)),
        max_values=f.get("max_values", base.max_values, ints(1, 255)),
        max_text=f.get("max_text", base.max_text, ints(1, 1_000)),
    )


def values_to_dict(cfg: ValueConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "min_support": cfg.min_support,
        "margin": cfg.margin,
        "margin_below": cfg.margin_below,
        "max_distinct": cfg.max_distinct,
        "learn_after": cfg.learn_after,
        "max_values": cfg.max_values,
        "max_text": cfg.max_text,
    }


def _power(m: int) -> str:
    """A magnitude as people read it: ``2^12``, ``-2^3`` (zero reads as ``2^-2``)."""
    return f"2^{m - 192}" if m >= 128 else f"-2^{64 - m}"




def check_values(cfg: ValueConfig, found: Sequence[ValueFinding]) -> list[Reason]:
    """The reasons for an event whose values the script judged (``found``; empty: none)."""
    if not cfg.enabled or not found:
        return []
    out: list[Reason] = []
    for kind, rule in ((RANGE, "range"), (CATEGORY, "unseen")):
        hits = [f for f in found if f.kind == kind]
        if not hits:
            continue
        detail: dict[str, object] = {"rule": join(NAME, rule)}
        if hits[0].seen == 0 and not hits[0].path:
            detail["note"] = REDELIVERED_NOTE
        else:
            detail["paths"] = list(dict.fromkeys(f.path for f in hits))
            first = hits[0]
            if kind == RANGE:
                about = "" if first.judged is None else f" (about {_power(first.judged)})"
                detail["note"] = (
                    f"a value{about} far outside the range this call's {first.path} was "
                    f"learned in ({_power(first.low)} .. {_power(first.high)} in magnitude, "
                    f"{first.seen} values learned)")
                if first.judged is not None:
                    detail["magnitude"] = _power(first.judged)
            else:
                detail["note"] = (
                    f"a value this call's {first.path} never took; it only ever took "
                    f"{first.low} distinct value(s) ({first.seen} values learned)")
            if cfg.learn_after:
                detail["learned_after"] = cfg.learn_after
        out.append(Reason(SOURCE, cfg.action, detail))
    return out


def redelivered(bits_range: bool, bits_unseen: bool) -> tuple[ValueFinding, ...]:
    """A redelivered event's findings, from its remembered answer's bits."""
    out = []
    if bits_range:
        out.append(ValueFinding("", RANGE, 0, 0, 0))
    if bits_unseen:
        out.append(ValueFinding("", CATEGORY, 0, 0, 0))
    return tuple(out)


def _bump(st: list[Any]) -> None:
    """One more time learned; a count at :data:`COUNT_MAX` loses half, and so does the count
    at its last change (the observations since the change are kept, so is settledness)."""
    if st[0] >= COUNT_MAX:
        half = st[0] // 2
        st[0], st[1] = st[0] - half, max(st[1] - half, 0)
    st[0] += 1


def _up(cfg: ValueConfig, high: int) -> int:
    """The margin above a range: ``margin`` where going up is going away from zero (the range
    reaches zero or above), ``margin_below`` where it is going towards zero (all negative)."""
    return cfg.margin if high >= ZERO_SIDE else cfg.margin_below


def _down(cfg: ValueConfig, low: int) -> int:
    """The margin below a range: ``margin`` where going down is going away from zero."""
    return cfg.margin if low < ZERO_SIDE else cfg.margin_below


class ValueReference:
    """The script's value counting in plain Python, for one agent (the agreement tests compare
    the two event by event): :meth:`event` judges and learns one new event's observations."""

    def __init__(self, cfg: ValueConfig, cap: int = VALUE_CAP) -> None:
        self.cfg, self.cap = cfg, cap
        #: slot → [count, changed, low, high] (range) or [count, changed, values | None]
        #: (category; None = open); ("p", slot, what) → reports waiting.
        self.fields: dict[object, Any] = {}
        self.reported = RunReports()
        #: Per held event: what approving it teaches (lua/guard_feedback.lua).
        self.lessons: dict[str, list[tuple[int, bytes, int]]] = {}

    def _new_field(self) -> bool:
        return len(self.fields) < self.cap

    def event(self, run: str, obs: Sequence[Observation], held: bool = False, event: str = "",
              keep: bool = False) -> tuple[ValueFinding, ...]:
        """``held``: the rule holds the event's service (at some priority), so what it reports
        does not count towards ``learn_after``; ``keep``: the rule pauses this event, so what
        it reports is kept as the lessons of ``event`` for :meth:`decide`."""
        cfg = self.cfg
        found: list[ValueFinding] = []
        for o in obs:
            st = self.fields.get(o.slot)
            if st is None:
                if not self._new_field():
                    continue
                self.fields[o.slot] = ([1, 1, o.value, o.value] if o.kind == RANGE
                                       else [1, 1, {o.value}])
                continue
            if (o.kind == RANGE) != (len(st) == 4):
                continue  # another kind's slot under the same hash: not read
            count, changed = st[0], st[1]
            # a full hash learns no new field; slots already settled are still judged
            settled = count >= cfg.min_support and count - changed >= cfg.min_support
            if o.kind == RANGE:
                low, high = st[2], st[3]
                value = ZERO_MIRROR if o.value == ZERO and high < ZERO_SIDE else o.value
                if low <= value <= high:
                    _bump(st)
                    continue
                if settled and (value > high + _up(cfg, high)
                                or value < low - _down(cfg, low)):
                    found.append(ValueFinding(o.path, RANGE, low, high, count, o.value))
                    if not held:
                        self._report(run, o, ("p", o.slot, value > high), value)
                    if keep:
                        self.lessons.setdefault(event, []).append((RANGE, o.slot, value))
                    continue
                if held and settled:  # inside the margin: allowed, not widening a held range
                    _bump(st)
                    continue
                self._learn_range(st, value, settled)
            else:
                values = st[2]
                if values is None or o.value in values:
                    _bump(st)
                    continue
                if settled:
                    found.append(ValueFinding(o.path, CATEGORY, len(values), 0, count))
                    if not held:
                        self._report(run, o, ("p", o.slot, o.value), o.value)
                    if keep:
                        self.lessons.setdefault(event, []).append((CATEGORY, o.slot, o.value))
                    continue
                self._learn_category(st, o.value, settled)
        return tuple(found)

    def decide(self, event: str, decision: str) -> int:
        """A person's decision on a held event (lua/guard_feedback.lua): approve learns the
        values reported for it that are still new to their slot, reject drops them. Lessons
        applied."""
        applied = 0
        for kind, slot, value in self.lessons.pop(event, []) if decision == "approve" else ():
            st = self.fields.get(slot)
            if st is None or (kind == RANGE) != (len(st) == 4):
                continue
            if kind == RANGE:
                # the range reaches the approved magnitude with its margin, not past it: an
                # approved 98,000 must not let 500,000 through (attack run 9)
                edge = None
                if value > st[3] and value - _up(self.cfg, value) > st[3]:
                    edge = value - _up(self.cfg, value)
                elif value < st[2] and value + _down(self.cfg, value) < st[2]:
                    edge = value + _down(self.cfg, value)
                if edge is not None:
                    self._learn_range(st, edge, True)
                    applied += 1
            elif kind == CATEGORY and st[2] is not None and value not in st[2]:
                self._learn_category(st, value, True)
                applied += 1
        self.lessons.pop(event, None)
        return applied

    @staticmethod
    def _learn_range(st: list[Any], value: int, settled: bool) -> None:
        """A wider range; a slot not yet settled starts counting its stability again (one
        settled stays so: a value inside the margin cannot open a window for a far one)."""
        _bump(st)
        if not settled:
            st[1] = st[0]
        st[2], st[3] = min(st[2], value), max(st[3], value)

    def _learn_category(self, st: list[Any], value: int, settled: bool) -> None:
        _bump(st)
        if not settled:
            st[1] = st[0]
        st[2].add(value)
        if len(st[2]) > self.cfg.max_distinct:
            st[2] = None

    def _report(self, run: str, o: Observation, key: tuple[object, ...], value: int) -> None:
        if not self.reported.first(run, key):
            return
        waiting = self.fields.get(key, 0) + 1
        if self.cfg.learn_after > 0 and waiting >= self.cfg.learn_after:
            self.fields.pop(key, None)
            st = self.fields[o.slot]
            if o.kind == RANGE:  # judged, so settled
                self._learn_range(st, value, True)
            else:
                self._learn_category(st, value, True)
        elif key in self.fields or self._new_field():
            self.fields[key] = waiting
