"""Validation helpers for policy tables: every error names the dotted path of the bad field.

Private to :mod:`models.guardrails`. Each helper takes the raw value and its dotted path and
either returns the value in its normal form or raises :class:`models.errors.ValidationError`.

>>> as_int(5, "g.limit", lo=1, hi=10)
5
>>> as_int(True, "g.limit", lo=1, hi=10)
Traceback (most recent call last):
...
models.errors.ValidationError: g.limit must be an integer from 1 to 10, got true
>>> check_keys({"limt": 1}, ("limit", "window_s"), "g")
Traceback (most recent call last):
...
models.errors.ValidationError: g.limt is not a known key (did you mean 'limit'?); allowed: limit, window_s
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from models.errors import ValidationError
from models.known_fields import did_you_mean
from models.sanitize import clean_name, shown

__all__ = [
    "GUARD_ACTIONS",
    "Fields",
    "as_action",
    "as_bool",
    "as_float",
    "as_int",
    "as_str",
    "as_str_list",
    "as_table",
    "check_keys",
    "floats",
    "forbid_keys",
    "ints",
    "join",
    "pick",
    "show",
]

#: What a guardrail may do when it matches (``allow`` is not an action of a rule).
GUARD_ACTIONS: tuple[str, ...] = ("flag", "pause", "reject")

T = TypeVar("T")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}\Z")


def join(path: str, key: str) -> str:
    """Dotted path of ``key`` under ``path``."""
    return f"{path}.{key}" if path else key


def show(value: Any) -> str:
    """A short, TOML-flavoured rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return shown(value)  # cleaned of markup and control characters, cut to 40
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_keys(table: Mapping[str, Any], allowed: Collection[str], path: str) -> None:
    """Unknown keys are errors: a typo must never silently disable a rule."""
    for key in table:
        if key not in allowed:
            name = join(path, clean_name(str(key)))  # the key is the client's text
            raise ValidationError(
                f"{name} is not a known key{did_you_mean(str(key), allowed)}; "
                f"allowed: {', '.join(sorted(allowed))}",
                name,
            )


def forbid_keys(table: Mapping[str, Any], keys: Collection[str], path: str, why: str) -> None:
    """Keys allowed at the top of a guardrail but not inside a per-service/priority override."""
    for key in table:
        if key in keys:
            raise ValidationError(f"{join(path, key)} cannot be overridden: {why}", join(path, key))


def as_table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{path} must be a table, got {show(value)}", path)
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{path} must be true or false, got {show(value)}", path)
    return value


def as_int(value: Any, path: str, *, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        wanted = f"must be {lo}" if lo == hi else f"must be an integer from {lo} to {hi}"
        raise ValidationError(f"{path} {wanted}, got {show(value)}", path)
    return value


def as_float(value: Any, path: str, *, lo: float, hi: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    # a TOML integer can have 400 digits: compare before float() (which would overflow)
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or not lo <= value <= hi:
        raise ValidationError(
            f"{path} must be a number from {lo:g} to {hi:g}, got {show(value)}", path
        )
    return float(value)


def as_action(value: Any, path: str) -> str:
    if value not in GUARD_ACTIONS:
        raise ValidationError(
            f"{path} must be one of {', '.join(GUARD_ACTIONS)}, got {show(value)}", path
        )
    return str(value)


def as_str(value: Any, path: str, *, max_chars: int = 1024, name_like: bool = False) -> str:
    if not isinstance(value, str) or not value or len(value) > max_chars:
        raise ValidationError(f"{path} must be a string of 1 to {max_chars} characters", path)
    if name_like and not _NAME.match(value):
        raise ValidationError(
            f"{path} must start with a letter or digit and use only letters, digits and "
            f"_ . : / -, got {show(value)}",
            path,
        )
    return value


def as_str_list(
    value: Any,
    path: str,
    *,
    choices: Collection[str] | None = None,
    max_items: int = 256,
    max_chars: int = 256,
) -> tuple[str, ...]:
    """An array of strings (each from ``choices`` when given), duplicates removed, order kept."""
    if not isinstance(value, list) or len(value) > max_items:
        raise ValidationError(f"{path} must be an array of at most {max_items} strings", path)
    out: list[str] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        text = as_str(item, where, max_chars=max_chars)
        if choices is not None and text not in choices:
            raise ValidationError(
                f"{where} must be one of {', '.join(choices)}, got {show(text)}", where
            )
        if text not in out:
            out.append(text)
    return tuple(out)


def pick(
    table: Mapping[str, Any], key: str, path: str, default: T, conv: Callable[[Any, str], T]
) -> T:
    """``conv(table[key])`` when the key is present, else ``default`` (the inherited value)."""
    return conv(table[key], join(path, key)) if key in table else default


class Fields:
    """One table being read: ``get(key, inherited, converter)`` names errors by dotted path."""

    __slots__ = ("path", "table")

    def __init__(self, table: Mapping[str, Any], path: str) -> None:
        self.table = table
        self.path = path

    def get(self, key: str, default: T, conv: Callable[[Any, str], T]) -> T:
        return pick(self.table, key, self.path, default, conv)


def ints(lo: int, hi: int) -> Callable[[Any, str], int]:
    """A converter for :meth:`Fields.get`: an integer within ``lo..hi``."""
    return lambda v, p: as_int(v, p, lo=lo, hi=hi)


def floats(lo: float, hi: float) -> Callable[[Any, str], float]:
    """A converter for :meth:`Fields.get`: a number within ``lo..hi``."""
    return lambda v, p: as_float(v, p, lo=lo, hi=hi)
