"""Loop breaker: the same node, or a short cycle of nodes, repeated past a bound within a run.

A node is the payload *shape* (skeleton hash, docs/design.md §3), so a call repeated with varying
argument values is still the same node. Pure part only: the caller supplies the run's last
``history`` nodes (oldest first, *without* the current event) and the current node.

Three rules, checked on the tail of ``history + [node]``:

- ``loop.same_node``  the node repeated back to back more than ``max_repeats`` times;
- ``loop.cycle``      a cycle of 2..``max_cycle_len`` distinct-shaped steps (``A B A B ...``,
  ``A B C A B C ...``) repeated back to back more than ``max_cycle_repeats`` times;
- ``loop.occurrences`` (off when 0) the node seen more than ``max_occurrences`` times among the
  last ``history`` nodes and this one, in any order.

>>> cfg = LoopConfig(max_repeats=3, max_cycle_repeats=2)
>>> [r.detail["rule"] for r in check_loop(cfg, ["a", "a", "a"], "a")]
['loop.same_node']
>>> check_loop(cfg, ["a", "a"], "a")
[]
>>> r, = check_loop(cfg, ["a", "b", "a", "b", "a"], "b")   # (a b) three times
>>> (r.detail["rule"], r.detail["cycle_len"], r.detail["repeats"])
('loop.cycle', 2, 3)
>>> check_loop(cfg, ["a", "b", "a"], "b")   # alternation at the bound is allowed
[]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import ValidationError
from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    check_keys,
    forbid_keys,
    ints,
    join,
)
from models.verdict import Reason

__all__ = ["NAME", "SOURCE", "LoopConfig", "check_loop", "loop_to_dict", "parse_loop"]

NAME = "loop"
SOURCE = f"guardrail:{NAME}"
_KEYS = (
    "enabled",
    "action",
    "history",
    "max_repeats",
    "max_cycle_len",
    "max_cycle_repeats",
    "max_occurrences",
)
_MAX_HISTORY = 1_024
_MAX_NODE_CHARS = 64


@dataclass(frozen=True, slots=True)
class LoopConfig:
    enabled: bool = True
    action: str = "flag"
    #: How many previous nodes of the run the caller supplies (global: shapes Redis state).
    history: int = 64
    max_repeats: int = 20
    #: Cycles of length 2..max_cycle_len are detected; 1 switches cycle detection off.
    max_cycle_len: int = 3
    max_cycle_repeats: int = 10
    #: 0 switches the "seen too often in the history" rule off.
    max_occurrences: int = 0


def _check_reachable(cfg: LoopConfig, path: str) -> None:
    room = cfg.history + 1
    if cfg.max_repeats > cfg.history:
        raise ValidationError(
            f"{join(path, 'max_repeats')} must be at most history ({cfg.history}): only the "
            f"last {cfg.history} nodes are kept, so {cfg.max_repeats + 1} repeats are never seen",
            join(path, "max_repeats"),
        )
    if cfg.max_cycle_len > 1 and (cfg.max_cycle_repeats + 1) * cfg.max_cycle_len > room:
        raise ValidationError(
            f"{join(path, 'max_cycle_repeats')}: ({cfg.max_cycle_repeats} + 1) x max_cycle_len "
            f"({cfg.max_cycle_len}) must be at most history + 1 ({room}), or long cycles are "
            "never seen",
            join(path, "max_cycle_repeats"),
        )
    if cfg.max_occurrences > cfg.history:
        raise ValidationError(
            f"{join(path, 'max_occurrences')} must be at most history ({cfg.history})",
            join(path, "max_occurrences"),
        )


def parse_loop(
    table: Mapping[str, Any], path: str, base: LoopConfig, *, override: bool = False
) -> LoopConfig:
    """Apply ``table`` over ``base``; ``history`` is global (it shapes the stored state)."""
    check_keys(table, _KEYS, path)
    if override:
        forbid_keys(table, ("history",), path, "it sets how many nodes Redis keeps per run")
    f = Fields(table, path)
    cfg = LoopConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        history=f.get("history", base.history, ints(2, _MAX_HISTORY)),
        max_repeats=f.get("max_repeats", base.max_repeats, ints(1, _MAX_HISTORY)),
        max_cycle_len=f.get("max_cycle_len", base.max_cycle_len, ints(1, 4)),
        max_cycle_repeats=f.get("max_cycle_repeats", base.max_cycle_repeats, ints(1, _MAX_HISTORY)),
        max_occurrences=f.get("max_occurrences", base.max_occurrences, ints(0, _MAX_HISTORY)),
    )
    _check_reachable(cfg, path)
    return cfg


def loop_to_dict(cfg: LoopConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "history": cfg.history,
        "max_repeats": cfg.max_repeats,
        "max_cycle_len": cfg.max_cycle_len,
        "max_cycle_repeats": cfg.max_cycle_repeats,
        "max_occurrences": cfg.max_occurrences,
    }


def _primitive(block: list[str]) -> bool:
    """True unless the block is itself a repetition of a shorter block (``a a``, ``a b a b``).

    A block of ``k`` nodes repeats a block of ``d`` (``d`` dividing ``k``) exactly when it has
    period ``d``: ``block[d:] == block[:-d]`` (one list comparison in C per divisor, not a
    Python loop per node; tests/unit/test_guardrails_loop.py checks it against the
    element-by-element definition)."""
    k = len(block)
    return not any(k % d == 0 and block[d:] == block[:-d] for d in range(1, k))


def _tail_repeats(seq: Sequence[str], k: int) -> int:
    """How many whole times the last ``k`` nodes repeat back to back at the end of ``seq``."""
    n = len(seq)
    matched = 0
    while matched + k < n and seq[n - 1 - matched] == seq[n - 1 - matched - k]:
        matched += 1
    return (matched + k) // k


def _short(node: str) -> str:
    return node if len(node) <= _MAX_NODE_CHARS else node[: _MAX_NODE_CHARS - 1] + "…"


def _quiet(cfg: LoopConfig, history: Sequence[str], node: str) -> bool:
    """True when :func:`check_loop` certainly finds nothing, decided without copying the
    history (the usual event: one comparison per cycle length). A repeat count above 1 needs
    the node to equal the one ``k`` back (``k`` = 1 for the same node, each cycle length
    otherwise), and with bounds of at least 1 a count of 1 is never over them; the occurrence
    rule needs the whole history, so it is left to the full check."""
    if cfg.max_occurrences > 0 or cfg.max_repeats < 1 or cfg.max_cycle_repeats < 1:
        return False
    if cfg.history < 1:
        return False
    m = min(len(history), cfg.history)
    if m and history[-1] == node:
        return False
    top = min(cfg.max_cycle_len, (m + 1) // 2)
    for k in range(2, top + 1):
        if history[-k] == node:
            return False
    return True


def check_loop(cfg: LoopConfig, history: Sequence[str], node: str) -> list[Reason]:
    """``history``: the run's previous nodes, oldest first (only the last ``cfg.history`` used)."""
    if not cfg.enabled:
        return []
    if _quiet(cfg, history, node):
        return []
    seq = [*history[-cfg.history :], node] if len(history) > cfg.history else [*history, node]
    same = _tail_repeats(seq, 1)
    if same > cfg.max_repeats:
        detail = {
            "rule": "loop.same_node",
            "repeats": same,
            "limit": cfg.max_repeats,
            "node": _short(node),
        }
        return [Reason(SOURCE, cfg.action, detail)]
    for k in range(2, min(cfg.max_cycle_len, len(seq) // 2) + 1):
        block = seq[-k:]
        if not _primitive(block):
            continue
        repeats = _tail_repeats(seq, k)
        if repeats > cfg.max_cycle_repeats:
            detail = {
                "rule": "loop.cycle",
                "cycle_len": k,
                "repeats": repeats,
                "limit": cfg.max_cycle_repeats,
                "cycle": [_short(n) for n in block],
            }
            return [Reason(SOURCE, cfg.action, detail)]
    if cfg.max_occurrences > 0:
        seen = seq.count(node)
        if seen > cfg.max_occurrences:
            detail = {
                "rule": "loop.occurrences",
                "count": seen,
                "limit": cfg.max_occurrences,
                "of_last": len(seq),
                "node": _short(node),
            }
            return [Reason(SOURCE, cfg.action, detail)]
    return []
