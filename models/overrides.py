"""A project's engine override: some ``[engine]`` parameters for one project only. Pure: no I/O.

The override is validated by the same strict model as the global engine config
(:func:`models.params.params_from_mapping`): an unknown key is an error with a "did you mean",
a wrong type names the key, and the result must be a valid :class:`EngineParams` on top of the
built-in defaults. Errors are :class:`ValidationError` whose ``field`` is ``engine.<key>`` (the
API answers 400 naming it).

>>> parse_override_toml("[engine]\\nfloor_bits = 14\\n")
{'floor_bits': 14.0}
>>> parse_override({"floor_bit": 14})
Traceback (most recent call last):
...
models.errors.ValidationError: engine.floor_bit is not a known engine parameter (did you mean 'floor_bits'?)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from models import toml_text
from models.errors import ConfigError, ValidationError
from models.params import EngineParams, coerce_param, params_from_mapping
from models.sanitize import clean_name

__all__ = ["OVERRIDE_LIMITS", "THRESHOLD_KEYS", "apply_override", "override_toml", "parse_override",
           "parse_override_toml"]

#: What a project's override may set (inclusive bounds). A project's own key can write an
#: override (``PUT /v1/policy/engine``), so the parameters that bound one chain's state and the
#: work of one script call are held to the built-in defaults or near them — a tenant can make
#: its chains smaller or its windows shorter, not Redis's work per event larger (a chain without
#: caps made one observe call run for seconds, and every tenant waited) — and every value stays
#: in a range that means something. The operator's own engine config
#: (``RATCHET_ENGINE_CONFIG``) is not held to these.
OVERRIDE_LIMITS: dict[str, tuple[float, float]] = {
    "node_cap": (2, 512),
    "edge_cap": (2, 4096),
    "window": (2, 100),
    "window_large": (2, 100),
    "checkpoint_runs": (5, 10_000),
    "large_runs": (1, 1_000_000),
    "min_support": (0, 1_000_000),
    "field_escape_support": (0, 1_000_000),
    "min_runs_soft": (0, 1_000_000),
    "min_runs_locked": (0, 1_000_000),
    "force_after_runs": (0, 1_000_000),
    "repeat_factor": (0, 100),
    "repeat_margin": (0, 1_000),
    "floor_bits": (0, 64),
    "fallback_bits": (0, 64),
    "fallback_min": (0, 64),
    "fallback_max": (0, 64),
    "fallback_step_up": (0, 64),
    "fallback_step_down": (0, 64),
    "sigma_multiplier": (0, 100),
    "forced_sigma": (0, 100),
    "sigma_min": (0, 100),
    "sigma_max": (0, 100),
    "sigma_step_up": (0, 100),
    "sigma_step_down": (0, 100),
    "stability": (0, 1),
    "stability_large": (0, 1),
}

#: Parameters a chain keeps its own copy of once created (moved by approvals and rejections):
#: storing an override of them also sets them on the project's existing chains.
THRESHOLD_KEYS = ("sigma_multiplier", "fallback_bits")


def parse_override(values: Mapping[str, Any]) -> dict[str, Any]:
    """The normal form of an override (typed values, sorted keys), or a ValidationError."""
    if not isinstance(values, Mapping):
        raise ValidationError("an engine override is a table of engine parameters", "engine")
    defaults = EngineParams()
    out: dict[str, Any] = {}
    for key in sorted(values):
        try:
            out[key] = coerce_param(key, values[key], defaults)
        except ConfigError as exc:
            raise ValidationError(str(exc), f"engine.{clean_name(str(key))}") from None
        low, high = OVERRIDE_LIMITS.get(key, (None, None))
        if low is not None and high is not None and not low <= out[key] <= high:
            raise ValidationError(
                f"engine.{key} must be between {_num(low)} and {_num(high)} in a project's "
                f"override, got {out[key]!r}", f"engine.{key}")
    try:
        params_from_mapping(out, defaults)
    except ConfigError as exc:  # a value out of its range, or a combination (window_large < window)
        named = str(exc).partition(" ")[0].removeprefix("engine.")
        raise ValidationError(str(exc), f"engine.{named}" if named in out else "engine") from None
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def parse_override_toml(text: str) -> dict[str, Any]:
    """An override written as the engine config is: an ``[engine]`` table."""
    doc = toml_text.loads(text, "engine override")
    names = {f.name for f in dataclasses.fields(EngineParams)}
    for key in doc:
        if key != "engine":
            where = "outside any table; parameters go under [engine]" if key in names else \
                "not a known table; the override has one table, [engine]"
            raise ValidationError(f"{clean_name(key)} is {where}", clean_name(key))
    table = doc.get("engine", {})
    if not isinstance(table, dict):
        raise ValidationError("[engine] must be a table", "engine")
    return parse_override(table)


def apply_override(base: EngineParams, override: Mapping[str, Any]) -> EngineParams:
    """``base`` with the override's values (an override that no longer fits — outside
    :data:`OVERRIDE_LIMITS`, e.g. stored by an older release, or not valid on top of ``base`` —
    keeps ``base``'s value for nothing: it raises ConfigError, and the caller keeps the global
    parameters)."""
    for key, value in override.items():
        low, high = OVERRIDE_LIMITS.get(key, (None, None))
        if (low is not None and high is not None and isinstance(value, (int, float))
                and not low <= value <= high):
            raise ConfigError(f"engine.{key} = {value!r} is outside what an override may set "
                              f"({_num(low)} to {_num(high)})")
    return params_from_mapping(override, base)


def override_toml(override: Mapping[str, Any]) -> str:
    """The override as an ``[engine]`` table (what ``GET`` shows and ``tune --write`` writes)."""
    lines = ["[engine]"]
    for key, value in sorted(override.items()):
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = f'"{value}"'
        else:
            text = repr(value)
        lines.append(f"{key} = {text}")
    return "\n".join(lines) + "\n"
