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

Anything else takes the reference. ``tests/unit/test_jcs.py`` checks the two agree on generated
values and on the shared vectors in ``docs/signature-vectors.json``.

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

__all__ = ["MAX_SAFE_INTEGER", "jcs", "reference_jcs"]

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
    if _fast_safe(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nesting or strings orjson refuses: the reference decides
            pass
    return reference_jcs(value)


def _fast_safe(value: Any) -> bool:
    """True when orjson's sorted output for ``value`` is its JCS form (exact types only)."""
    stack = [value]
    while stack:
        node = stack.pop()
        t = type(node)
        if t is dict:
            for k, v in node.items():
                if type(k) is not str or not k.isascii():
                    return False
                if type(v) is not str:
                    stack.append(v)
        elif t is list:
            stack.extend(v for v in node if type(v) is not str)
        elif t is int:
            if not -MAX_SAFE_INTEGER <= node <= MAX_SAFE_INTEGER:
                return False
        elif t is float:
            # NaN and infinities fail the comparison; integral floats print differently
            if not (1e-4 <= abs(node) < 1e16 and not node.is_integer()):
                return False
        elif not (t is str or t is bool or node is None):
            return False
    return True
