r"""RE2 search sets (``re2.Set``, RE2's ``RE2::Set``): many patterns in one linear-time
automaton that answers the indices of those that match — built one way for the author rules'
prefilter (:mod:`models.guardrails.pattern_set`) and the built-in rules'
(:func:`models.guardrails.pattern.builtin_scope`).

>>> s = search_set(["(?m:a$)", "b"])
>>> sorted(s.Match("xa\nc")), sorted(s.Match("b"))
([0, 1], [0, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import re2

__all__ = ["SET_MAX_MEM", "SET_MEM_PER_RULE", "search_set"]

#: Memory cap of one compiled set (program + automaton cache), bytes per rule it holds — what
#: each rule's own regex may use (:mod:`models.guardrails.regex_safety`) — and at most
#: :data:`SET_MAX_MEM` in all.
SET_MEM_PER_RULE = 256 << 10
SET_MAX_MEM = 32 << 20


def _options(rules: int) -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    opts.max_mem = min(SET_MAX_MEM, SET_MEM_PER_RULE * max(rules, 1))
    return opts


def search_set(sources: Sequence[str]) -> Any | None:
    """A search set of the empty pattern then ``sources`` (``Match`` answers index ``k + 1``
    for ``sources[k]``, and always 0 unless RE2 could not finish); None when RE2 refuses it."""
    try:
        s = re2.Set.SearchSet(_options(len(sources)))
        s.Add("")
        for src in sources:
            s.Add(src)
        s.Compile()
    except re2.error:
        return None
    return s
