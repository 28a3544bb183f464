"""PII guardrail: personal data and secrets in payload values.

Detectors (pick with ``detectors``): ``email``, ``card`` (brand prefix + length + Luhn),
``phone``, ``us_ssn``, ``uk_nino``, ``es_dni`` (Spanish DNI/NIE), ``iban`` (mod 97),
``secret`` (well-known key prefixes, PEM private keys, JWTs) and ``entropy`` (long
high-entropy tokens). One reason per detector that found something, with its own action when
``detector_actions`` names one (it wins over ``action``). A reason holds counts, key paths and
redacted hints — never the value.

>>> from models.guardrails.paths import walk
>>> cfg = parse_pii({"detectors": ["email", "secret"], "detector_actions": {"secret": "pause"}},
...                 "guardrails.pii", PiiConfig())
>>> leaves = walk({"to": "bob@example.com", "env": {"AWS_KEY": "AKIAIOSFODNN7EXAMPLE"}})
>>> [(r.detail["rule"], r.action, r.detail["paths"]) for r in check_pii(cfg, leaves)]
[('pii.email', 'flag', ['to']), ('pii.secret', 'pause', ['env.AWS_KEY'])]
>>> check_pii(cfg, walk({"order_id": "4111111111111112", "at": "2024-01-15T10:30:00Z"}))
[]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from models.errors import ValidationError
from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    as_str_list,
    as_table,
    check_keys,
    floats,
    ints,
    join,
)
from models.guardrails.budget import ScanBudget
from models.guardrails.paths import Leaf, PathSet
from models.guardrails.pii_detectors import DETECTORS
from models.guardrails.pii_scan import scan_texts
from models.guardrails.pii_secrets import Finding
from models.guardrails.redact import MAX_EXAMPLES
from models.verdict import Reason, strictest

__all__ = [
    "DEFAULT_DETECTORS", "DETECTOR_NAMES", "NAME", "PII_STEPS_PER_CHAR", "SOURCE", "PiiConfig",
    "check_pii", "parse_pii", "pii_reasons", "pii_to_dict", "select_pii",
]

NAME = "pii"
SOURCE = f"guardrail:{NAME}"
#: Budget steps (:mod:`models.guardrails.budget`) one scanned character costs. Measured on one
#: machine: the detectors take up to ~700 ns per character (digit-heavy text; ~56 ns on prose),
#: RE2 at its worst 14 ns per step — so 50 steps.
PII_STEPS_PER_CHAR = 50
DETECTOR_NAMES: tuple[str, ...] = (*DETECTORS, "secret", "entropy")
#: On unless a policy says otherwise: cards, national ids and secrets. Emails, phone numbers and
#: IBANs are everyday arguments of agent tools (CRM, mail, calendars, payouts) — on synthetic
#: traffic the email detector alone flagged 2,250 normal events of 45,588 and took the enforced
#: run FPR from 4.5 % to 37 %; on agent traffic written outside (Dec 5) the IBAN detector flagged
#: every claims payout, 6.3 % of all normal runs, and caught no anomaly on its own — so a policy
#: turns them on where they matter.
DEFAULT_DETECTORS: tuple[str, ...] = tuple(
    d for d in DETECTOR_NAMES if d not in {"email", "phone", "iban"})
_KEYS = (
    "enabled",
    "action",
    "detectors",
    "detector_actions",
    "paths",
    "exclude_paths",
    "max_scan_chars",
    "entropy_min_length",
    "entropy_max_length",
    "entropy_min_bits",
)
_ALL = PathSet.compile(["**"], "paths")
_NONE = PathSet.compile([], "exclude_paths", exact_case=True)


@dataclass(frozen=True, slots=True)
class PiiConfig:
    enabled: bool = True
    action: str = "flag"
    detectors: tuple[str, ...] = DEFAULT_DETECTORS
    #: Per-detector action; wins over ``action``.
    detector_actions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    paths: PathSet = _ALL
    exclude_paths: PathSet = _NONE
    max_scan_chars: int = 65_536
    entropy_min_length: int = 32
    entropy_max_length: int = 256
    entropy_min_bits: float = 4.5


def _actions(value: Any, path: str, base: Mapping[str, str]) -> Mapping[str, str]:
    table = as_table(value, path)
    check_keys(table, DETECTOR_NAMES, path)
    merged = dict(base)
    merged.update({k: as_action(v, join(path, k)) for k, v in table.items()})
    return MappingProxyType(dict(sorted(merged.items())))


def _detectors(value: Any, path: str) -> tuple[str, ...]:
    return as_str_list(value, path, choices=DETECTOR_NAMES)


def _paths(value: Any, path: str) -> PathSet:
    return PathSet.compile(as_str_list(value, path), path)


def _exclude_paths(value: Any, path: str) -> PathSet:
    return PathSet.compile(as_str_list(value, path), path, exact_case=True)


def parse_pii(
    table: Mapping[str, Any], path: str, base: PiiConfig, *, override: bool = False
) -> PiiConfig:
    """Apply ``table`` over ``base``; ``detector_actions`` merges key by key, arrays replace."""
    check_keys(table, _KEYS, path)
    f = Fields(table, path)
    cfg = PiiConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        detectors=f.get("detectors", base.detectors, _detectors),
        detector_actions=f.get(
            "detector_actions",
            base.detector_actions,
            lambda v, p: _actions(v, p, base.detector_actions),
        ),
        paths=f.get("paths", base.paths, _paths),
        exclude_paths=f.get("exclude_paths", base.exclude_paths, _exclude_paths),
        max_scan_chars=f.get("max_scan_chars", base.max_scan_chars, ints(64, 1_048_576)),
        entropy_min_length=f.get("entropy_min_length", base.entropy_min_length, ints(16, 1_024)),
        entropy_max_length=f.get("entropy_max_length", base.entropy_max_length, ints(16, 4_096)),
        entropy_min_bits=f.get("entropy_min_bits", base.entropy_min_bits, floats(3.0, 6.0)),
    )
    if cfg.entropy_max_length < cfg.entropy_min_length:
        where = join(path, "entropy_max_length")
        raise ValidationError(
            f"{where} must be at least entropy_min_length ({cfg.entropy_min_length})", where
        )
    return cfg


def pii_to_dict(cfg: PiiConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "detectors": list(cfg.detectors),
        "detector_actions": dict(cfg.detector_actions),
        "paths": list(cfg.paths.sources),
        "exclude_paths": list(cfg.exclude_paths.sources),
        "max_scan_chars": cfg.max_scan_chars,
        "entropy_min_length": cfg.entropy_min_length,
        "entropy_max_length": cfg.entropy_max_length,
        "entropy_min_bits": cfg.entropy_min_bits,
    }


#: Whole values that are never personal data: timestamps/dates and UUIDs (very common).
_INERT = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d:?\d\d)?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


#: Integers of at least nine digits (a US SSN's; phone numbers and cards are longer) are read
#: as the digits they are written with, by the same detectors and field-name hints as a string
#: of those digits: ``{"ssn": 536221234}`` is ``{"ssn": "536221234"}`` (round 12 of the
#: outside attack runs: SSNs and phone numbers sent as JSON numbers were never read).
_READ_DIGITS = 10**8


def select_pii(
    cfg: PiiConfig, leaves: Sequence[Leaf], budget: ScanBudget | None = None
) -> tuple[list[str], list[Leaf], list[tuple[Leaf, Finding]], int]:
    """What the PII scan of one event reads: (texts to scan, the leaf of each, findings on
    numeric leaves, values left unscanned for want of budget). Charges ``budget``."""
    texts: list[str] = []
    owners: list[Leaf] = []
    hits: list[tuple[Leaf, Finding]] = []
    limit = cfg.max_scan_chars
    unscanned = 0
    select = None if cfg.paths.everything else cfg.paths
    exclude = cfg.exclude_paths if cfg.exclude_paths else None
    for leaf in leaves:
        if select is not None and not select.matches(leaf.key):
            continue
        if exclude is not None and exclude.matches(leaf.key):
            continue
        value = leaf.value
        if type(value) is int and (value >= _READ_DIGITS or value <= -_READ_DIGITS):
            value = str(value)
        if isinstance(value, str):
            size = len(value)
            # _INERT needs a "-" at index 4 (a date) or 8 (a UUID): most values skip the regex
            if size >= 6 and not (
                size <= 40 and (value[4] == "-" or value[8:9] == "-") and _INERT.fullmatch(value)
            ):
                text = value if size <= limit else value[:limit]
                if budget is not None:  # budget.take, inlined (a call per value)
                    cost = min(size, limit) * PII_STEPS_PER_CHAR
                    if cost > budget.steps:
                        unscanned += 1
                        continue
                    budget.steps -= cost
                    budget.used += cost
                texts.append(text)
                owners.append(leaf)
    return texts, owners, hits, unscanned


def pii_reasons(
    cfg: PiiConfig, hits: Sequence[tuple[Leaf, Finding]], unscanned: int
) -> list[Reason]:
    """One reason per detector that found something (in :data:`DETECTOR_NAMES` order), then
    ``pii.scan_limit`` when values were left unscanned."""
    by_detector: dict[str, dict[str, Any]] = {}
    for leaf, f in hits:
        d = by_detector.setdefault(f.detector, {"count": 0, "paths": [], "hints": [], "kinds": []})
        d["count"] += 1
        for k, v in (("paths", leaf.path), ("hints", f.hint), ("kinds", f.kind)):
            if v not in d[k] and len(d[k]) < MAX_EXAMPLES:
                d[k].append(v)
    out: list[Reason] = []
    for det in DETECTOR_NAMES:
        if det in by_detector:
            d = by_detector[det]
            detail = {"rule": f"{NAME}.{det}", "detector": det, **d}
            if det not in ("secret", "entropy"):
                del detail["kinds"]
            out.append(Reason(SOURCE, cfg.detector_actions.get(det, cfg.action), detail))
    if unscanned:
        actions = [cfg.detector_actions.get(det, cfg.action) for det in cfg.detectors]
        out.append(Reason(SOURCE, strictest(actions), {
            "rule": f"{NAME}.scan_limit",
            "unscanned_values": unscanned,
            "note": "the scan budget of this event ran out before these values were scanned; "
                    "they cannot be vouched for, so the strictest detector action applies",
        }))
    return out


def check_pii(
    cfg: PiiConfig, leaves: Sequence[Leaf], budget: ScanBudget | None = None
) -> list[Reason]:
    """``leaves`` from :func:`models.guardrails.paths.walk` over the event's payload. Scanned
    text is charged to ``budget`` (None: unbounded); values it cannot cover are not scanned and
    a ``pii.scan_limit`` reason carries the strictest action of the enabled detectors.

    One event at a time: the reference for the batch scan
    (:mod:`models.guardrails.batch`), which must find exactly the same."""
    if not cfg.enabled or not cfg.detectors:
        return []
    texts, owners, hits, unscanned = select_pii(cfg, leaves, budget)
    found = scan_texts(
        texts,
        [leaf.name for leaf in owners],
        detectors=cfg.detectors,
        entropy_min_length=cfg.entropy_min_length,
        entropy_max_length=cfg.entropy_max_length,
        entropy_min_bits=cfg.entropy_min_bits,
    )
    hits += [(owners[i], f) for i, f in found]
    return pii_reasons(cfg, hits, unscanned)
