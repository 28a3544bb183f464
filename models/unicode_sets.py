"""Character sets a reader cannot see or that spell the same thing: one definition for the
guardrails' reading of text (:func:`models.guardrails.paths.fold`) and for what an approver is
shown (:func:`models.labels.visible`). Pure: no I/O.

>>> "\\u034f" in IGNORABLE_CHARS, "a" in IGNORABLE_CHARS
(True, False)
>>> "\\u0664\\u0661\\u0661\\u0661".translate(PLAIN_DIGITS_AND_DASHES), "\\u2013".translate(PLAIN_DIGITS_AND_DASHES)
('4111', '-')
"""

from __future__ import annotations

import unicodedata

__all__ = ["IGNORABLE_CHARS", "IGNORABLE_CLASS", "PLAIN_DIGITS_AND_DASHES"]

#: The Unicode Default_Ignorable_Code_Point ranges (DerivedCoreProperties): soft hyphen,
#: combining grapheme joiner, Arabic letter mark, Hangul fillers, Khmer inherent vowels,
#: Mongolian variation selectors and vowel separator, zero-width space / non-joiner / joiner,
#: direction marks, bidi embeddings and isolates, word joiner and invisible operators,
#: variation selectors, byte-order mark, halfwidth Hangul filler, the unassigned U+FFF0–FFF8,
#: shorthand format controls, musical symbol formatting, tags and variation selectors
#: supplement. They render as nothing: a word hides behind them.
_RANGES = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)


def _class_item(lo: int, hi: int) -> str:
    def esc(c: int) -> str:
        return f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}"
    return esc(lo) if lo == hi else f"{esc(lo)}-{esc(hi)}"


#: The ranges as the inside of a regex character class (``[...]``), escaped.
IGNORABLE_CLASS = "".join(_class_item(lo, hi) for lo, hi in _RANGES)
#: Every ignorable character (membership tests, ``str.translate`` tables).
IGNORABLE_CHARS = frozenset(chr(c) for lo, hi in _RANGES for c in range(lo, hi + 1))

#: Dashes that spell a hyphen-minus in a number (hyphen, non-breaking hyphen, figure dash, en
#: and em dash, horizontal bar, minus sign, small and fullwidth hyphen-minus).
_DASHES = (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63, 0xFF0D)
#: Unicode has no decimal digit past the planes below U+20000 (the last: U+1FBF9).
_LAST_DIGIT = 0x1FFFF
#: ``str.translate`` table: every decimal digit of any script (Arabic-Indic, Devanagari,
#: fullwidth…) to its ASCII digit, and the dashes above to ``-`` — what NFKC leaves alone.
PLAIN_DIGITS_AND_DASHES: dict[int, int] = {
    c: 0x30 + unicodedata.decimal(chr(c))
    for c in range(0x80, _LAST_DIGIT + 1)
    if unicodedata.category(chr(c)) == "Nd"
}
PLAIN_DIGITS_AND_DASHES.update(dict.fromkeys(_DASHES, 0x2D))
