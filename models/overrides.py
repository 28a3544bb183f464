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
import tomllib
from collections.abc import Mapping
from typing import Any

from models.errors import ConfigError, ValidationError
from models.params import EngineParams, params_from_mapping

__all__ = ["THRESHOLD_KEYS", "apply_override", "override_toml", "parse_override",
           "parse_override_toml"]

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
            one = params_from_mapping({key: values[key]})
        except ConfigError as exc:
            raise ValidationError(str(exc), f"engine.{key}") from None
        out[key] = getattr(one, key)
    try:
        params_from_mapping(out, defaults)
    except ConfigError as exc:  # a combination (window_large < window, ...)
        raise ValidationError(str(exc), "engine") from None
    return out


def parse_override_toml(text: str) -> dict[str, Any]:
    """An override written as the engine config is: an ``[engine]`` table."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"engine override is not valid TOML: {exc}", None) from None
    names = {f.name for f in dataclasses.fields(EngineParams)}
    for key in doc:
        if key != "engine":
            where = "outside any table; parameters go under [engine]" if key in names else \
                "not a known table; the override has one table, [engine]"
            raise ValidationError(f"{key} is {where}", key)
    table = doc.get("engine", {})
    if not isinstance(table, dict):
        raise ValidationError("[engine] must be a table", "engine")
    return parse_override(table)


def apply_override(base: EngineParams, override: Mapping[str, Any]) -> EngineParams:
    """``base`` with the override's values (an override that no longer fits keeps ``base``'s
    value for nothing: it raises ConfigError, and the caller keeps the global parameters)."""
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
