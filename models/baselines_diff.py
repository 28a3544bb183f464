"""What changed between two baseline exports (``ratchet baselines export``), e.g. before and
after a deploy: chains added or removed, mode changes, unlearnable flips, transitions added or
removed, and transition probabilities that moved by at least ``min_shift``. Pure: the caller
reads the files.

Runs, events and counts always grow between two exports; they are not differences. An export
made with ``--top`` holds only its most frequent transitions, so only those are compared (the
result says so).

>>> a = {"chain": "p/a/s", "mode": "soft_lock", "unlearnable": False,
...      "transitions": [{"from": "^", "to": "n1", "p": 1.0}, {"from": "n1", "to": "$", "p": 1.0}]}
>>> b = {**a, "mode": "locked",
...      "transitions": [{"from": "^", "to": "n1", "p": 0.8}, {"from": "^", "to": "n2", "p": 0.2},
...                      {"from": "n1", "to": "$", "p": 1.0}]}
>>> d = diff_exports(a, b)
>>> d.differs, d.chains[0].mode, [t["to"] for t in d.chains[0].added]
(True, ('soft_lock', 'locked'), ['n2'])
>>> [(t["from"], t["to"], t["p_before"], t["p_after"]) for t in d.chains[0].shifted]
[('^', 'n1', 1.0, 0.8)]
>>> diff_exports(a, a).differs
False
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.errors import ValidationError

__all__ = ["BaselineDiff", "ChainDiff", "diff_exports", "docs_by_chain"]

_SPECIAL = {"^": "START", "$": "END", "~": "OVERFLOW"}


@dataclass(frozen=True, slots=True)
class ChainDiff:
    chain: str
    #: (before, after) when the mode changed.
    mode: tuple[str, str] | None
    #: (before, after) when the unlearnable flag flipped.
    unlearnable: tuple[bool, bool] | None
    added: tuple[dict[str, Any], ...]
    removed: tuple[dict[str, Any], ...]
    shifted: tuple[dict[str, Any], ...]
    #: Either export was cut with ``--top``: only exported transitions were compared.
    partial: bool

    @property
    def differs(self) -> bool:
        return bool(self.mode or self.unlearnable or self.added or self.removed or self.shifted)


@dataclass(frozen=True, slots=True)
class BaselineDiff:
    added_chains: tuple[str, ...]
    removed_chains: tuple[str, ...]
    #: Chains in both exports that changed (unchanged ones are left out).
    chains: tuple[ChainDiff, ...]
    min_shift: float

    @property
    def differs(self) -> bool:
        return bool(self.added_chains or self.removed_chains or self.chains)

    def to_json(self) -> dict[str, Any]:
        return {
            "differs": self.differs, "min_shift": self.min_shift,
            "chains_added": list(self.added_chains), "chains_removed": list(self.removed_chains),
            "chains_changed": [
                {"chain": c.chain,
                 "mode": None if c.mode is None else {"before": c.mode[0], "after": c.mode[1]},
                 "unlearnable": None if c.unlearnable is None
                 else {"before": c.unlearnable[0], "after": c.unlearnable[1]},
                 "transitions_added": list(c.added), "transitions_removed": list(c.removed),
                 "probability_shifts": list(c.shifted), "partial": c.partial}
                for c in self.chains
            ],
        }

    def render_text(self) -> str:
        if not self.differs:
            return f"no differences (probability shifts under {self.min_shift:g} ignored)"
        lines = []
        lines += [f"+ chain {c}" for c in self.added_chains]
        lines += [f"- chain {c}" for c in self.removed_chains]
        for c in self.chains:
            lines.append(f"~ chain {c.chain}" + (" (exports cut with --top: only exported "
                                                  "transitions compared)" if c.partial else ""))
            if c.mode:
                lines.append(f"    mode: {c.mode[0]} -> {c.mode[1]}")
            if c.unlearnable:
                lines.append(f"    unlearnable: {str(c.unlearnable[0]).lower()} -> "
                             f"{str(c.unlearnable[1]).lower()}")
            for t in c.added:
                lines.append(f"    + {t['from_name']} -> {t['to_name']}  p={t['p_after']:.3f}")
            for t in c.removed:
                lines.append(f"    - {t['from_name']} -> {t['to_name']}  p was "
                             f"{t['p_before']:.3f}")
            for t in c.shifted:
                lines.append(f"    ~ {t['from_name']} -> {t['to_name']}  p {t['p_before']:.3f} "
                             f"-> {t['p_after']:.3f} ({t['shift']:+.3f})")
        return "\n".join(lines)


def docs_by_chain(doc: Any, what: str) -> dict[str, Mapping[str, Any]]:
    """The chains of one export (one chain's object, or a list of them) by chain label;
    :class:`ValidationError` naming ``what`` when it is not an export."""
    docs = doc if isinstance(doc, list) else [doc]
    out: dict[str, Mapping[str, Any]] = {}
    for i, d in enumerate(docs):
        if not isinstance(d, dict) or not isinstance(d.get("chain"), str) \
                or not isinstance(d.get("transitions"), list):
            raise ValidationError(
                f"{what}: item {i} is not a baseline export (an object with \"chain\" and "
                "\"transitions\", from `ratchet baselines export`)", what)
        out[d["chain"]] = d
    return out


def _name(node: str, labels: Mapping[str, Any]) -> str:
    if node in _SPECIAL:
        return _SPECIAL[node]
    lab = labels.get(node)
    if not isinstance(lab, dict):
        return node
    paths = [str(p) for p in lab.get("paths", [])][:4]
    more = int(lab.get("total_paths", len(paths))) - len(paths)
    shown = ", ".join(paths + ([f"+{more} more"] if more > 0 else []))
    return f"{lab.get('service', '?')} {lab.get('action', '?')} {{{shown}}}"


def _edges(doc: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    out = {}
    for t in doc.get("transitions", []):
        try:
            out[(str(t["from"]), str(t["to"]))] = float(t["p"])
        except (KeyError, TypeError, ValueError):
            raise ValidationError(
                f"chain {doc.get('chain')}: a transition lacks from/to/p", "transitions"
            ) from None
    return out


def _chain(chain: str, a: Mapping[str, Any], b: Mapping[str, Any], min_shift: float) -> ChainDiff:
    labels = {**(a.get("labels") or {}), **(b.get("labels") or {})}
    ea, eb = _edges(a), _edges(b)

    def row(edge: tuple[str, str], before: float | None, after: float | None) -> dict[str, Any]:
        out: dict[str, Any] = {"from": edge[0], "to": edge[1], "from_name": _name(edge[0], labels),
                               "to_name": _name(edge[1], labels)}
        if before is not None:
            out["p_before"] = before
        if after is not None:
            out["p_after"] = after
        if before is not None and after is not None:
            out["shift"] = round(after - before, 6)
        return out

    added = tuple(row(e, None, eb[e]) for e in sorted(eb.keys() - ea.keys()))
    removed = tuple(row(e, ea[e], None) for e in sorted(ea.keys() - eb.keys()))
    shifted = tuple(row(e, ea[e], eb[e]) for e in sorted(ea.keys() & eb.keys())
                    if abs(eb[e] - ea[e]) >= min_shift)
    mode = (str(a.get("mode")), str(b.get("mode"))) if a.get("mode") != b.get("mode") else None
    ua, ub = bool(a.get("unlearnable", False)), bool(b.get("unlearnable", False))
    partial = any(int(d.get("transitions_total", len(d.get("transitions", []))))
                  > len(d.get("transitions", [])) for d in (a, b))
    return ChainDiff(chain, mode, (ua, ub) if ua != ub else None, added, removed, shifted, partial)


def diff_exports(before: Any, after: Any, min_shift: float = 0.05) -> BaselineDiff:
    """The differences from export ``before`` to export ``after`` (decoded JSON)."""
    if not 0 <= min_shift <= 1:
        raise ValidationError("min_shift must be between 0 and 1", "min_shift")
    a, b = docs_by_chain(before, "first export"), docs_by_chain(after, "second export")
    changed = tuple(
        d for d in (_chain(c, a[c], b[c], min_shift) for c in sorted(a.keys() & b.keys()))
        if d.differs
    )
    return BaselineDiff(tuple(sorted(b.keys() - a.keys())), tuple(sorted(a.keys() - b.keys())),
                        changed, min_shift)
