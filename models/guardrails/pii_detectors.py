"""PII detectors over one string: candidates by regex, then checksums/validity rules.

Each detector takes the text and the name of the field holding it (a field called ``phone``
or ``ssn`` lets a bare digit string count; elsewhere bare digits are ids and are left alone)
and returns :class:`~models.guardrails.pii_secrets.Finding` objects with redacted hints.
All regexes use fixed or bounded repeats over delimited classes: linear-time scans.

>>> [f.kind for f in find_email("Reach me at alice.smith@example.co.uk.")]
['email']
>>> find_email("see icon@2x.png or git@github.com:org/repo.git")
[]
>>> [len(find_card(t)) for t in ("4111 1111 1111 1111", "4111 1111 1111 1112", "1700000000000")]
[1, 0, 0]
>>> [len(find_phone(t, "")) for t in ("+44 20 7946 0958", "(415) 555-2671", "4155552671",
...                                    "123e4567-e89b-12d3-a456-426614174000",
...                                    "2024-01-15T10:30:00+01:00")]
[1, 1, 0, 0, 0]
>>> len(find_phone("4155552671", "mobile_phone"))
1
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

from models.guardrails.pii_checks import card_ok, digits_of, es_dni_ok, iban_ok, nino_ok, ssn_ok
from models.guardrails.pii_secrets import Finding, merge_spans
from models.guardrails.redact import hint

__all__ = [
    "DETECTORS",
    "FIELD_HINTS",
    "Bounds",
    "Detector",
    "Windows",
    "candidate_windows",
    "digit_windows",
    "email_windows",
    "find_card",
    "find_email",
    "find_es_dni",
    "find_iban",
    "find_phone",
    "find_uk_nino",
    "find_us_ssn",
]

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9][A-Za-z0-9-]{0,62}"
    r"(?:\.[A-Za-z0-9-]{1,63}){0,8}\.(?P<tld>[A-Za-z]{2,24})(?![\w-]|:[\w~/])"
)
#: File extensions that look like top-level domains in ``icon@2x.png``-style names.
_TLD_FILES = frozenset(
    [
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "ico",
        "bmp",
        "tif",
        "tiff",
        "js",
        "mjs",
        "ts",
        "tsx",
        "css",
        "map",
        "json",
        "yaml",
        "yml",
        "txt",
        "md",
        "lock",
        "py",
        "rb",
        "go",
        "rs",
        "java",
        "zip",
        "gz",
        "tar",
        "pdf",
    ]
)
_CARD = re.compile(
    r"(?<![\w.,+/-])(?:\d{13,19}|\d{4}(?P<cs>[ \t._/-])\d{4}(?P=cs)\d{4}(?P=cs)\d{1,4}"
    r"(?:(?P=cs)\d{1,3})?|\d{4}(?P<cx>[ \t._/-])\d{6}(?P=cx)\d{4,5})(?![\w]|[.,/-]\d)"
)
_PHONE_INTL = re.compile(
    r"(?<![\w+])\+[1-9]\d{0,14}(?:[ .-]?\(\d{1,4}\)\d{0,12}|[ .-]\d{1,12}){0,6}(?![\w-]|[.,]\d)"
)
_PHONE_NANP = re.compile(
    r"(?<![\w+.,/:-])(?:1[ .-]?)?(?:\((?P<na>\d{3})\) ?|(?P<nb>\d{3})[ .-])(?P<nx>\d{3})[ .-]\d{4}"
    r"(?![\w-]|[.,:]\d)"
)
_PHONE_TRUNK = re.compile(
    r"(?<![\w+.,/:-])0\d{1,4}(?P<ts>[ -])\d{2,8}(?:(?P=ts)\d{2,8}){0,3}(?![\w-]|[.,:/]\d)"
)
_PHONE_BARE = re.compile(r"\+?\d{7,15}")
_PHONE_FIELD = re.compile(r"(?i)phone|mobile|msisdn|fax|(?:^|_)tel(?:$|_)")
_SSN = re.compile(r"(?<![\w-])\d{3}(?P<ss>[- \t._/])\d{2}(?P=ss)\d{4}(?![\w-])")
_SSN_FIELD = re.compile(r"(?i)ssn|social_?security")
# any letter case (round 12 of the outside attack runs: lower-case ids passed)
# (scoped flags: the window gate joins these patterns into one alternation)
_NINO = re.compile(r"(?<!\w)(?i:[A-Z]{2})(?: ?\d{2}){3} ?(?i:[A-D])(?!\w)")
_ES_DNI = re.compile(r"(?<![\w-])(?:\d{8}|(?i:[XYZ])-?\d{7})-?(?i:[A-Z])(?![\w-])")
_IBAN = re.compile(
    r"(?<!\w)[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?!\w)"
)


Windows = Sequence[tuple[int, int]]
_CLUSTER = re.compile(r"\d(?:[ ().\/_\t-]{0,3}\d){5}")
#: Every digit-based candidate holds a cluster of 6 close digits and is at most this long.
_DIGIT_MARGIN = 48
_EMAIL_BEFORE, _EMAIL_AFTER = 65, 256
_MAX_EMAIL_WINDOWS = 1_000


Bounds = Sequence[tuple[int, int]]


def _regional(
    spans: Sequence[tuple[int, int]], at: Sequence[int], bounds: Bounds
) -> list[tuple[int, int]]:
    """``spans`` (ordered by ``at``, the position that owns each) clipped to the region of
    their owner and merged within it — what :func:`merge_spans` gives each region alone."""
    out: list[tuple[int, int]] = []
    region, nregions = 0, len(bounds)
    lo, hi = bounds[0] if bounds else (0, 0)
    start_of_region = 0  # index in ``out`` of the region's first window
    for (a, b), owner in zip(spans, at, strict=True):
        while owner >= hi and region + 1 < nregions:
            region += 1
            lo, hi = bounds[region]
            start_of_region = len(out)
        if not lo <= owner < hi:
            continue
        a, b = max(lo, a), min(hi, b)
        if len(out) > start_of_region and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        elif a < b:
            out.append((a, b))
    return out


def digit_windows(text: str, bounds: Bounds | None = None) -> list[tuple[int, int]]:
    """Spans around clusters of six digits apart by at most three separators: where card, phone, national-id and IBAN
    candidates can be. A long text is scanned only there; most values have none.

    ``bounds``: regions of ``text`` (the texts of several events joined) whose windows are
    kept apart, each merged and clipped to its region exactly as if it were scanned alone."""
    m = _DIGIT_MARGIN
    clusters = [c.span() for c in _CLUSTER.finditer(text)]
    if bounds is None:
        return merge_spans(((a - m, b + m) for a, b in clusters), len(text))
    return _regional([(a - m, b + m) for a, b in clusters], [a for a, _ in clusters], bounds)


def email_windows(text: str, bounds: Bounds | None = None) -> list[tuple[int, int]]:
    """Spans around each ``@`` (the whole text, or region, when it has very many);
    ``bounds`` as in :func:`digit_windows`."""
    ats: list[int] = []
    at = text.find("@")
    while at >= 0:
        ats.append(at)
        at = text.find("@", at + 1)
    regions = [(0, len(text))] if bounds is None else bounds
    if len(ats) > _MAX_EMAIL_WINDOWS:  # some region may have too many: whole regions there
        crowded: list[tuple[int, int]] = []
        for lo, hi in regions:
            left, right = bisect_left(ats, lo), bisect_left(ats, hi)
            if right - left > _MAX_EMAIL_WINDOWS:
                crowded.append((lo, hi))
                del ats[left:right]
        if crowded:
            rest = email_windows_at(ats, regions)
            return sorted(crowded + rest)
    return email_windows_at(ats, regions)


def email_windows_at(ats: Sequence[int], bounds: Bounds) -> list[tuple[int, int]]:
    """Windows around the ``@`` at ``ats``, per region of ``bounds``."""
    return _regional([(a - _EMAIL_BEFORE, a + _EMAIL_AFTER) for a in ats], ats, bounds)


def _scan(rx: re.Pattern[str], text: str, windows: Windows) -> Iterator[re.Match[str]]:
    for lo, hi in windows:
        yield from rx.finditer(text, lo, hi)


def _found(detector: str, m: re.Match[str]) -> Finding:
    return Finding(detector, detector, hint(m.group()), *m.span())


def find_email(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    w = email_windows(text) if windows is None else windows
    return [
        _found("email", m) for m in _scan(_EMAIL, text, w) if m["tld"].lower() not in _TLD_FILES
    ]


def find_card(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    """A grouped number followed by more digits ("4111 1111 1111 1111 12/26": an expiry
    date) is also tried without its last group."""
    w = digit_windows(text) if windows is None else windows
    out: list[Finding] = []
    for m in _scan(_CARD, text, w):
        value, end = m.group(), m.end()
        sep = m["cs"] or m["cx"]
        if not card_ok(value) and sep:
            value = value.rsplit(sep, 1)[0]
            end = m.start() + len(value)
        if card_ok(value):
            out.append(Finding("card", "card", hint(value), m.start(), end))
    return out


def _phone_digits_ok(candidate: str) -> bool:
    digits = digits_of(candidate)
    return 8 <= len(digits) <= 15 and len(set(digits)) > 2


def find_phone(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    """International (``+``), North American and trunk-0 national formats, with separators;
    bare digit strings only in a field named like a phone number."""
    w = digit_windows(text) if windows is None else windows
    out: list[Finding] = []
    for m in _scan(_PHONE_INTL, text, w):
        if _phone_digits_ok(m.group()):
            out.append(_found("phone", m))
    for m in _scan(_PHONE_NANP, text, w):
        area, exchange = m["na"] or m["nb"], m["nx"]
        if area[0] in "01" or exchange[0] in "01":
            continue
        if not any(f.start <= m.start() < f.end for f in out):
            out.append(_found("phone", m))
    for m in _scan(_PHONE_TRUNK, text, w):
        if 10 <= len(digits_of(m.group())) <= 12 and _phone_digits_ok(m.group()):
            out.append(_found("phone", m))
    if not out and name and _PHONE_FIELD.search(name):
        m2 = _PHONE_BARE.fullmatch(text.strip())
        if m2 is not None and _phone_digits_ok(m2.group()):
            out.append(Finding("phone", "phone", hint(text), 0, len(text)))
    return out


def find_us_ssn(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    w = digit_windows(text) if windows is None else windows
    out = [_found("us_ssn", m) for m in _scan(_SSN, text, w) if ssn_ok(m.group())]
    if not out and name and _SSN_FIELD.search(name):
        bare = text.strip()
        if len(bare) == 9 and bare.isdigit() and ssn_ok(bare):
            out.append(Finding("us_ssn", "us_ssn", hint(text), 0, len(text)))
    return out


def find_uk_nino(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    w = digit_windows(text) if windows is None else windows
    return [_found("uk_nino", m) for m in _scan(_NINO, text, w) if nino_ok(m.group())]


def find_es_dni(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    w = digit_windows(text) if windows is None else windows
    return [_found("es_dni", m) for m in _scan(_ES_DNI, text, w) if es_dni_ok(m.group())]


def find_iban(text: str, name: str = "", windows: Windows | None = None) -> list[Finding]:
    w = digit_windows(text) if windows is None else windows
    return [_found("iban", m) for m in _scan(_IBAN, text, w) if iban_ok(m.group())]


Detector = Callable[[str, str, Windows | None], list[Finding]]

#: Detector name -> its finder. All but ``email`` look in :func:`digit_windows`.
DETECTORS: dict[str, Detector] = {
    "email": find_email,
    "card": find_card,
    "phone": find_phone,
    "us_ssn": find_us_ssn,
    "uk_nino": find_uk_nino,
    "es_dni": find_es_dni,
    "iban": find_iban,
}

#: Detector name -> field names under which a bare value counts (no candidate regex needed).
FIELD_HINTS: dict[str, re.Pattern[str]] = {"phone": _PHONE_FIELD, "us_ssn": _SSN_FIELD}

#: Detector name -> every pattern its finder searches the digit windows with (its only way to
#: find anything there: the bare-value rules need a field name, which a joined scan has not).
WINDOW_PATTERNS: dict[str, tuple[re.Pattern[str], ...]] = {
    "card": (_CARD,),
    "phone": (_PHONE_INTL, _PHONE_NANP, _PHONE_TRUNK),
    "us_ssn": (_SSN,),
    "uk_nino": (_NINO,),
    "es_dni": (_ES_DNI,),
    "iban": (_IBAN,),
}
_GROUP = re.compile(r"\(\?P([<=])(\w+)([>)])")


@lru_cache(maxsize=64)
def _any_candidate(detectors: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern that matches wherever any of ``detectors``' window patterns matches: their
    alternation, each group renamed apart (``cs`` of card → ``g0_cs``) with its back-references,
    so no alternative sees another's groups. None when there is nothing to gate."""
    parts: list[str] = []
    for i, det in enumerate(detectors):
        for j, rx in enumerate(WINDOW_PATTERNS.get(det, ())):
            if rx.flags != re.UNICODE:
                return None  # an inline flag could not sit inside an alternation
            prefix = f"g{i}_{j}_"
            src = _GROUP.sub(rf"(?P\1{prefix}\2\3", rx.pattern)
            parts.append(f"(?:{src})")
    return re.compile("|".join(parts)) if parts else None


def candidate_windows(
    text: str, windows: list[tuple[int, int]], detectors: tuple[str, ...]
) -> list[tuple[int, int]]:
    """The ``windows`` of ``text`` where at least one of ``detectors`` can find something (one
    search of their alternation per window instead of one scan per detector); the detectors
    then search only those — the same findings, since a window none of their patterns
    matches in gives none of them anything."""
    gate = _any_candidate(detectors)
    if gate is None or not windows:
        return windows
    search = gate.search
    return [w for w in windows if search(text, w[0], w[1])]
