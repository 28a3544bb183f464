"""RFC 8785 (JSON Canonicalization Scheme) bytes of a JSON value: what signature v2 signs.

The definition is the ``rfc8785`` package (a maintained implementation of the RFC), exposed as
:func:`reference_jcs`. It is pure Python (about 40 µs for a typical event), so :func:`jcs` first
tries orjson, which writes byte-identical output for the values where the two grammars coincide:

- object keys that are ASCII (their UTF-16 and code-point orders agree; orjson sorts by code
  point, JCS by UTF-16 code unit, which differ only for keys holding characters >= U+E000);
- strings (both escape exactly ``"``, ``\\`` and U+0000..U+001F, with ``\\b \\t \\n \\f \\r``
  and lowercase ``\\u00xx``, and write everything else as UTF-8);
- integers within the I-JSON range ``|n| <= 2**53 - 1``;
- floats that are not integral and have ``1e-4 <= |x| < 1e16`` (both print the shortest round-trip
  digits in plain decimal there; JCS prints ``1.0`` as ``1``, ``1e-7`` with an exponent);
- ``true``, ``false``, ``null``.

Integral floats within ±2**53 are written as the integers they equal (JCS prints ``12.0`` as
``12``, orjson as ``12.0``): such a value is copied with those floats made ints, then orjson
writes it. Anything else takes the reference.

Integers outside ``±(2**53 - 1)``, NaN, infinities and lone surrogates are refused with
:class:`ValueError` (they have no portable canonical form).

>>> jcs({"b": 1, "a": [0.00005, 1e-7, 1e21, -0.0, 1.0]})
b'{"a":[0.00005,1e-7,1e+21,0,1],"b":1}'
>>> jcs({"\\U0001F600": 1, "\\uff61": 2}) == '{"\\U0001F600":1,"\\uff61":2}'.encode()
True
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

__all__ = ["MAX_SAFE_INTEGER", "jcs", "plain_float", "reference_jcs"]

#: Largest integer every JSON implementation reads exactly (I-JSON, RFC 7493 §2.2).
MAX_SAFE_INTEGER = 2**53 - 1


def reference_jcs(value: Any) -> bytes:
    """The RFC 8785 canonical form as the ``rfc8785`` package writes it; ``ValueError`` if
    ``value`` has none (non-finite float, integer beyond ±(2**53 − 1), lone surrogate)."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(f"no RFC 8785 canonical form: {exc}") from None


def jcs(value: Any) -> bytes:
    """RFC 8785 bytes of ``value``: orjson where provably identical, else :func:`reference_jcs`."""
    safe = _fast_safe(value)
    if safe:
        try:
            if safe is _INTEGRAL:
                value = _integral_floats_as_ints(value)
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, RecursionError):  # orjson refuses: the reference decides
            pass
    return reference_jcs(value)


_INTEGRAL = 2  # _fast_safe: safe once integral floats are written as ints


def _fast_safe(value: Any) -> int:
    """1 when orjson's sorted output for ``value`` is its JCS form (exact types only),
    :data:`_INTEGRAL` when it is after :func:`_integral_floats_as_ints`, 0 otherwise."""
    safe = 1
    stack = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is dict:
            for k, v in node.items():
                if type(k) is not str or not k.isascii():
                    return 0
                if type(v) is not str:
                    stack.append(v)
        elif t is list:
            stack.extend(v for v in node if type(v) is not str)
        elif t is int:
            if not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER:
                return 0
        elif t is float:
            # NaN and infinities fail the comparisons
            if node.is_integer():
                if not -_EXACT_INTEGRAL < node < _EXACT_INTEGRAL:
                    return 0
                safe = _INTEGRAL
            elif not plain_float(node):
                return 0
        elif not (t is str or t is bool or node is None):
            return 0
    return safe


def plain_float(x: float) -> bool:
    """Whether orjson writes the float ``x`` exactly as RFC 8785 does: not integral, and
    ``1e-4 <= |x| < 1e16`` (both then print its shortest digits in plain decimal)."""
    return 1e-4 <= abs(x) < 1e16 and not x.is_integer()


#: Below this magnitude an integral float's shortest digits are its integer digits, which is
#: what JCS prints (ECMAScript Number::toString without an exponent below 1e21).
_EXACT_INTEGRAL = float(2**53)


def _integral_floats_as_ints(value: Any) -> Any:
    """A copy of ``value`` with every integral float replaced by the int it equals."""
    t = type(value)
    if t is float:
        return int(value) if value.is_integer() else value
    if t is dict:
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if t is list:
        return [_integral_floats_as_ints(v) for v in value]
    return value
