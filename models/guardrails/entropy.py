"""Sequence-entropy guardrail: a run whose recent call shapes are too varied.

Shannon entropy (bits) of the distribution of the last ``window`` nodes of a run (the current
one included). A normal agent cycles through a handful of shapes (a few bits); a run that keeps
producing new shapes — enumeration, fuzzing, hostile high-entropy payloads — approaches
``log2(window)``. Only checked once the run has at least ``min_events`` events.

Pure part: the caller supplies the run's previous nodes (the same last-N list the loop breaker
uses), the current node, and the run's total event count (this event included).

>>> cfg = EntropyConfig(window=8, min_events=8, max_bits=2.5)
>>> r, = check_entropy(cfg, list("abcdefg"), "h", run_events=8)    # 8 distinct: 3 bits
>>> (r.detail["rule"], r.detail["bits"], r.detail["limit"])
('entropy.sequence', 3.0, 2.5)
>>> check_entropy(cfg, list("abababa"), "b", run_events=8)          # 1 bit
[]
>>> check_entropy(cfg, list("abcdefg"), "h", run_events=7)          # too early to judge
[]
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.errors import ValidationError
from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    check_keys,
    floats,
    forbid_keys,
    ints,
    join,
)
from models.verdict import Reason

__all__ = [
    "NAME",
    "SOURCE",
    "EntropyConfig",
    "check_entropy",
    "entropy_to_dict",
    "parse_entropy",
    "sequence_bits",
]

NAME = "entropy"
SOURCE = f"guardrail:{NAME}"
_KEYS = ("enabled", "action", "window", "min_events", "max_bits")


@dataclass(frozen=True, slots=True)
class EntropyConfig:
    enabled: bool = True
    action: str = "flag"
    #: Last N nodes of the run (current included) — global: it shapes the stored history.
    window: int = 32
    min_events: int = 20
    max_bits: float = 4.5


def parse_entropy(
    table: Mapping[str, Any], path: str, base: EntropyConfig, *, override: bool = False
) -> EntropyConfig:
    check_keys(table, _KEYS, path)
    if override:
        forbid_keys(table, ("window",), path, "it sets how many nodes Redis keeps per run")
    f = Fields(table, path)
    cfg = EntropyConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        window=f.get("window", base.window, ints(4, 1_024)),
        min_events=f.get("min_events", base.min_events, ints(1, 1_000_000)),
        max_bits=f.get("max_bits", base.max_bits, floats(0.0, 10.0)),
    )
    ceiling = math.log2(cfg.window)
    if cfg.max_bits >= ceiling:
        where = join(path, "max_bits")
        raise ValidationError(
            f"{where} must be below log2(window) = {ceiling:.2f} bits, the most {cfg.window} "
            "nodes can carry; otherwise the rule can never fire",
            where,
        )
    return cfg


def entropy_to_dict(cfg: EntropyConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "window": cfg.window,
        "min_events": cfg.min_events,
        "max_bits": cfg.max_bits,
    }


def sequence_bits(nodes: Sequence[str]) -> float:
    """Shannon entropy in bits of the node distribution (0 for an empty or constant list)."""
    n = len(nodes)
    return -sum(c / n * math.log2(c / n) for c in Counter(nodes).values()) if n else 0.0


def check_entropy(
    cfg: EntropyConfig, history: Sequence[str], node: str, *, run_events: int | None
) -> list[Reason]:
    """``history``: previous nodes of the run, oldest first; ``run_events`` includes this one."""
    if not cfg.enabled or run_events is None or run_events < cfg.min_events:
        return []
    recent = [*history[-(cfg.window - 1) :], node]  # window >= 4, so the slice is never [-0:]
    bits = sequence_bits(recent)
    if bits <= cfg.max_bits:
        return []
    detail = {
        "rule": "entropy.sequence",
        "bits": round(bits, 4),
        "limit": cfg.max_bits,
        "window": len(recent),
        "distinct": len(set(recent)),
    }
    return [Reason(SOURCE, cfg.action, detail)]
