"""How deeply a TOML text nests arrays and inline tables, found before it is parsed.

``tomllib`` parses nested arrays and inline tables recursively: a policy of 500 nested ``[``
raises ``RecursionError`` (a 500 at ``PUT /v1/policy``) instead of a ``TOMLDecodeError``. This
scanner walks the text once, skipping comments and strings, and names the key whose value nests
deeper than the limit, so the caller can answer a 400 naming that field. Pure: no I/O.

>>> nesting_problem("a = [[1], [2]]", max_depth=2) is None
True
>>> nesting_problem('x = "[[[["\\n[g.cost]\\nlimit = [[[1]]]', max_depth=2)
'g.cost.limit'
"""

from __future__ import annotations

__all__ = ["MAX_NESTING", "nesting_problem"]

#: Deeper than any policy needs (policies nest at most a few levels) and far below the
#: interpreter's recursion limit.
MAX_NESTING = 32


def _skip_string(text: str, i: int) -> int:
    """Index just after the string literal starting at ``i`` (basic, literal, multi-line)."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        if end < 0:
            return len(text)
        end += 3
        while end < len(text) and text[end] == quote:  # up to two quotes may close it
            end += 1
        return end
    j = i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if quote == '"' and text[j] == "\\" else 1
    return j + 1


def nesting_problem(text: str, max_depth: int = MAX_NESTING) -> str | None:
    """The key (as written, e.g. ``guardrails.cost.limit``) whose value nests arrays or inline
    tables more than ``max_depth`` deep, ``""`` if no key precedes it, or ``None`` if none does."""
    depth, key, table, statement, i = 0, "", "", 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_string(text, i)
            continue
        if c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        if c == "[" and depth == 0 and not text[statement:i].strip():  # [table] / [[array]]
            end = text.find("\n", i)
            table = text[i:len(text) if end < 0 else end].split("#")[0].strip().strip("[]")
            table = table.strip()
            i = len(text) if end < 0 else end
            continue
        if c in "[{":
            depth += 1
            if depth > max_depth:
                return key
        elif c in "]}":
            depth = max(depth - 1, 0)
        elif c == "=" and depth == 0:
            key = ".".join(part for part in (table, text[statement:i].strip()) if part)
        elif c == "\n" and depth == 0:
            statement = i + 1
        i += 1
    return None
