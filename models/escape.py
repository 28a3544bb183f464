"""Escape probability of a payload shape never seen for its action (Witten–Bell smoothing over
an action's shape vocabulary). Pure: no I/O.

The back-off model scores an event by ``p(action | previous action) · p(shape | action)``. A
shape never seen for its action has a maximum-likelihood ``p(shape | action)`` of 0, which
scores it like a call nobody ever made. Witten–Bell smoothing instead gives the *unseen* shapes
of an action the share of its events that, so far, brought a new shape:

    escape(action) = T / (C + T)      T distinct shapes learned, C events of the action

An action that always sent one shape has a tiny escape; one whose calls legitimately vary
(optional arguments) a larger one. The shape's *key paths* (``models.labels.key_paths``) say
more: a new shape that is a new combination of key paths the action already used is likely (an
optional argument left out or added), while one that brings a key path the action never used is
stronger evidence, so it is charged the action's field-novelty escape on top:

    escape × X / (C + X)              X events of the action that brought a key path new to it

Rules (``EngineParams.shape_escape``): "off" (0: the shape scores as never seen), "all" (any new
shape of a known action gets ``escape``), "combos" (only a new combination of known key paths
does; a new key path gets nothing), "paths" (a shape bringing new key paths gets ``escape ×
field escape``), "each" (``escape × field escape`` per new key path: fields never seen for the
action are independent novelties, so a payload gaining several is that much less likely).
With "paths" and "each", a key path new to an action gets an escape only once the action has
``field_support`` learned events (``EngineParams.field_escape_support``); before that such a
shape scores as never seen, as under "combos".
Written in the order ``lua/observe.lua`` computes it, so the doubles agree exactly.

>>> shape_escape("paths", shapes=1, action_count=199_000, path_events=1, new_path=False, scale=1000)
0.005
>>> round(shape_escape("paths", shapes=1, action_count=199_000, path_events=1, new_path=True,
...                    scale=1000), 9)
2.5e-05
>>> shape_escape("combos", shapes=3, action_count=97_000, path_events=1, new_path=True, scale=1000)
0.0
>>> path_digest(["a:str", "b.c:num"]) == path_digest(("a:str", "b.c:num"))
True
"""

from __future__ import annotations

from collections.abc import Iterable

import xxhash

from models.labels import MAX_PATHS

__all__ = ["ESCAPE_RULES", "path_digest", "shape_escape"]

#: Escape rules by their integer code in the Lua scripts.
ESCAPE_RULES: tuple[str, ...] = ("off", "all", "combos", "paths", "each")


def shape_escape(
    rule: str, *, shapes: int, action_count: int, path_events: int, new_path: bool, scale: int,
    new_paths: int = 1, field_support: int = 0,
) -> float:
    """``p(shape | action)`` for a shape never seen for the action (see the module docstring).

    ``shapes`` and ``path_events`` are plain counts, ``action_count`` is in 1/``scale`` units
    (decayed like every count); ``new_paths`` is how many of the shape's key paths are new to
    the action (rule "each"). 0 when the rule is "off" or the action was never seen, and for a
    shape bringing a key path new to the action while ``action_count`` is under
    ``field_support`` events (``EngineParams.field_escape_support``: a field escape estimated
    from a few dozen calls of an action that never varied would excuse a new field at ≈ 9 bits).

    >>> round(shape_escape("each", shapes=1, action_count=99_000, path_events=1, new_path=True,
    ...                    scale=1000, new_paths=2), 12)
    1e-06
    >>> shape_escape("each", shapes=1, action_count=99_000, path_events=1, new_path=True,
    ...              scale=1000, field_support=100)
    0.0
    """
    if rule == "off" or action_count <= 0:
        return 0.0
    t = shapes * scale
    esc = t / (action_count + t)
    if rule == "all" or not new_path:
        return esc
    if rule == "combos" or action_count < field_support * scale:
        return 0.0
    x = path_events * scale
    field = x / (action_count + x)
    if rule == "paths":
        return esc * field
    for _ in range(max(new_paths, 1)):
        esc = esc * field
    return esc


def path_digest(paths: Iterable[str]) -> str:
    """A compact, comma-separated list of the key paths' 32-bit hashes (8 hex digits each), at
    most :data:`models.labels.MAX_PATHS` of them: what the observe script needs to tell a new
    combination of known key paths from a key path new to the action, in ~9 bytes a path."""
    out: list[str] = []
    for path in paths:
        if len(out) >= MAX_PATHS:
            break
        out.append(xxhash.xxh32_hexdigest(path.encode()))
    return ",".join(out)
