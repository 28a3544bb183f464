"""Key-path digests of payload shapes, memoised by shape: what the observe script needs to tell
a new combination of an action's known key paths from a key path new to it (``shape_escape``).

A shape's key paths depend on its skeleton alone, so they are computed once per distinct shape
(``models.labels.key_paths``, the paths node labels show) and remembered by the shape's hash; an
event then costs one dictionary lookup. Bounded: the memo is cleared when it is full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.escape import path_digest
from models.labels import key_paths
from models.skeleton import skeleton

__all__ = ["ShapePaths"]

#: Shapes remembered at most (then the memo starts over).
MEMO_SHAPES = 65_536


@dataclass
class ShapePaths:
    """``digest(shape hash, payload)`` → the payload's key-path hashes, comma-separated."""

    memo: dict[str, str] = field(default_factory=dict)

    def digest(self, shape: str, payload: Any) -> str:
        got = self.memo.get(shape)
        if got is None:
            if len(self.memo) >= MEMO_SHAPES:
                self.memo.clear()
            got = self.memo[shape] = path_digest(key_paths(skeleton(payload)))
        return got
