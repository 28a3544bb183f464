"""Parsing the TOML texts tenants and operators send (policies, engine overrides and configs).

``tomllib`` fails in three ways besides a ``TOMLDecodeError``: deep nesting of arrays and
inline tables recurses (``RecursionError`` past a few hundred levels), and an integer of more
than 4,300 digits raises ``ValueError`` (CPython's limit on integer conversion) — each a 500 at
``PUT /v1/policy`` or ``/v1/policy/engine`` until round 11 of the outside attack runs (a 2 KB
override nested 1,000 deep: a 198 KB traceback logged per call). Here every failure is a
:class:`ValidationError` naming what was wrong. Pure: no I/O.

>>> loads("a = 1", "the policy")
{'a': 1}
>>> loads("a = " + "9" * 5000, "the policy")
Traceback (most recent call last):
...
models.errors.ValidationError: the policy holds an integer of more than 4,300 digits
>>> loads("[engine]\\nwindow = 0x" + "f" * 4000, "engine override")
Traceback (most recent call last):
...
models.errors.ValidationError: engine.window holds an integer wider than 64 bits
>>> loads("a = " + "[" * 40 + "]" * 40, "the policy")
Traceback (most recent call last):
...
models.errors.ValidationError: a nests arrays or inline tables more than 32 levels deep
"""

from __future__ import annotations

import tomllib
from typing import Any

from models.errors import ValidationError
from models.guardrails.nesting import MAX_NESTING, nesting_problem

__all__ = ["loads"]


def loads(text: str, what: str) -> dict[str, Any]:
    """``text`` parsed, or :class:`ValidationError` (``what`` names the document in messages:
    "the policy", "engine override"); nesting deeper than :data:`MAX_NESTING` is refused before
    parsing, its ``field`` the key that nests."""
    deep = nesting_problem(text)
    if deep is not None:
        raise ValidationError(f"{deep or what} nests arrays or inline tables more than "
                              f"{MAX_NESTING} levels deep", deep or None)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"{what} is not valid TOML: {exc}", None) from None
    except ValueError:  # int(): more digits than the interpreter converts
        raise ValidationError(f"{what} holds an integer of more than 4,300 digits",
                              None) from None
    except RecursionError:  # nesting the scanner above did not see
        raise ValidationError(f"{what} nests too deeply to parse", None) from None
    wide = _wide_integer(doc, "")
    if wide is not None:
        # hex, octal and binary integers have no digit limit in tomllib (round 12 of the
        # outside attack runs: 4,000 hex digits, a 500 when the error message showed it)
        raise ValidationError(f"{wide or what} holds an integer wider than 64 bits", wide or None)
    return doc


def _wide_integer(value: Any, path: str) -> str | None:
    """The dotted key of the first integer wider than 64 bits in ``value``, or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return path if value.bit_length() > 64 else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _wide_integer(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _wide_integer(item, path)
            if found is not None:
                return found
    return None
