"""Display safety of client strings (docs/design.md §5). Pure: no I/O.

Strings a client sends may later be shown to a human: in error messages, in the approvals queue,
in a dashboard. Two tools, one character set:

- :func:`display_problem` — for **identifiers** (event, agent, run ids, service, action) that must
  round-trip exactly: it names what makes a string unsafe so the request can be refused (400).
- :func:`clean_text` — for **free text** (approval reasons, echoed input in error messages): it
  strips HTML tags and the unsafe characters and returns what is left.

Unsafe characters (:data:`UNSAFE_CLASS`): C0/C1 control characters and DEL, invisible formatting
characters that can disguise text (soft hyphen, zero-width characters, bidirectional overrides
and isolates, line/paragraph separators, byte-order mark, interlinear annotations), and the
angle brackets ``<`` ``>`` that open HTML markup.

>>> clean_text("ok <script>alert(1)</script>\\x07 done")
'ok alert(1) done'
>>> clean_text("line one\\nline\\u202etwo")
'line one linetwo'
>>> display_problem("billing-bot"), display_problem("a<b>"), display_problem("a\\u200bb")
(None, 'HTML markup (angle brackets)', 'invisible formatting characters')
>>> shown("x" * 100, 10)
"'xxxxxxxxx…'"
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["UNSAFE_CLASS", "clean_name", "clean_text", "display_problem", "is_display_safe",
           "quoted", "shown"]

_CONTROL = "\\u0000-\\u001f\\u007f-\\u009f"
_INVISIBLE = (
    "\\u00ad\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb"
)
_MARKUP = "<>"
#: The regex character class of every unsafe character (also used in the OpenAPI patterns).
UNSAFE_CLASS = f"[{_CONTROL}{_INVISIBLE}{_MARKUP}]"

_CONTROL_RE = re.compile(f"[{_CONTROL}]")
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
_UNSAFE_RE = re.compile(UNSAFE_CLASS)
_TAG_RE = re.compile(r"<[^<>]*>")
_SPACES_RE = re.compile(r"[\t\n\r\u2028\u2029]")


def display_problem(value: str) -> str | None:
    """What makes ``value`` unsafe to show (``None`` if nothing)."""
    if _UNSAFE_RE.search(value) is None:
        return None
    if _CONTROL_RE.search(value):
        return "control characters"
    if _INVISIBLE_RE.search(value):
        return "invisible formatting characters"
    return "HTML markup (angle brackets)"


def is_display_safe(value: str) -> bool:
    return _UNSAFE_RE.search(value) is None


def clean_name(value: str, max_chars: int = 64) -> str:
    """A client's *name* (a key, a field) for a message: its unsafe characters removed but what
    sits between angle brackets kept, so ``<img src=x>`` reads ``img src=x`` and not nothing.

    >>> clean_name("<img src=x onerror=alert(1)>\u202e")
    'img src=x onerror=alert(1)'
    """
    text = _UNSAFE_RE.sub("", _SPACES_RE.sub(" ", value)).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def clean_text(value: str, max_chars: int | None = None) -> str:
    """``value`` without HTML tags and unsafe characters (line breaks and tabs become spaces),
    trimmed, and cut to ``max_chars`` characters."""
    text = _TAG_RE.sub("", value)
    text = _SPACES_RE.sub(" ", text)
    text = _UNSAFE_RE.sub("", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text


def shown(value: Any, max_chars: int = 40) -> str:
    """A client value quoted for an error message: cleaned, short, never the whole input."""
    if isinstance(value, str):
        return "'" + clean_text(value, max_chars) + "'"
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return clean_text(repr(value), max_chars)


def quoted(value: str, max_chars: int = 60) -> str:
    r"""``value`` faithfully, as a JSON (and TOML basic) string literal, for an error message
    that must show exactly what was written (a regex): every unsafe character, angle brackets
    included, is written as a ``\uXXXX`` escape instead of being removed, so the message holds
    none of them and the literal still reads back as ``value``. Cut to ``max_chars`` characters
    of ``value``, with ``…`` after the closing quote.

    >>> print(quoted("(?<!foo)bar"), quoted("x" * 10, 4))
    "(?\u003c!foo)bar" "xxxx"…
    >>> print(quoted('say "hi"\n'))
    "say \"hi\"\n"
    """
    cut = value[:max_chars]
    text = json.dumps(cut, ensure_ascii=False)
    text = _UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text + ("…" if len(value) > max_chars else "")
