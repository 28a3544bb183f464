"""Secrets: API keys and tokens by well-known prefix, and long high-entropy tokens.

Every regex here has fixed or bounded repeats over character classes that exclude their own
delimiters, so a scan is linear in the length of the text.

>>> [(f.kind, f.hint) for f in find_secrets("key=AKIAIOSFODNN7EXAMPLE and more")]
[('aws_access_key_id', 'AKIA…(20 chars)')]
>>> find_secrets("sk-learn-preprocessing-pipeline-v2")    # a package name, not an OpenAI key
[]
>>> round(shannon_bits("aaaabbbb"), 3), round(shannon_bits("abcdefgh"), 3)
(1.0, 3.0)
>>> find_high_entropy("see 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
...                   min_length=32, max_length=256, min_bits=4.5)   # hex digests stay below 4 bits
[]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import re2

from models.guardrails.redact import hint

__all__ = [
    "SECRET_KINDS",
    "SECRET_PATTERN",
    "Finding",
    "find_high_entropy",
    "find_secrets",
    "merge_spans",
    "shannon_bits",
    "token_pattern",
    "token_spans",
]


class Finding(NamedTuple):
    """One detected value: ``hint`` is redacted; ``start``/``end`` index the scanned text."""

    detector: str
    kind: str
    hint: str
    start: int
    end: int


#: kind -> (regex, public prefixes a hint may show)
_SECRETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "aws_access_key_id": (r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b", ("AKIA", "ASIA")),
    "github_token": (
        r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ),
    "github_pat": (r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b", ("github_pat_",)),
    "slack_token": (r"\bxox[abposr]-[A-Za-z0-9-]{10,250}", ("xoxb-", "xoxp-", "xoxa-", "xoxs-")),
    "stripe_secret_key": (r"\b(?:sk|rk)_live_[A-Za-z0-9]{16,247}\b", ("sk_live_", "rk_live_")),
    "openai_api_key": (
        r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,200}",
        ("sk-proj-", "sk-"),
    ),
    "google_api_key": (r"\bAIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", ("AIza",)),
    "private_key": (
        r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----",
        ("-----BEGIN",),
    ),
    "jwt": (
        r"\beyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{16,2048}",
        ("eyJ",),
    ),
}
SECRET_KINDS: tuple[str, ...] = tuple(_SECRETS)
SECRET_PATTERN = "|".join(f"(?P<{k}>{rx})" for k, (rx, _p) in _SECRETS.items())
_SECRET_RE = re.compile(SECRET_PATTERN)
_TOKEN_CHARS = "A-Za-z0-9+/=_-"
_LOWER = re.compile(r"[a-z]")
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"[0-9]")


#: Literal anchor -> (characters a match may start before it, longest match from the anchor).
#: Every secret pattern holds one, so only the positions of anchors are tried.
_ANCHORS: dict[str, int] = {
    "AKIA": 0, "ASIA": 0, "ABIA": 0, "ACCA": 0, "ghp_": 0, "gho_": 0, "ghu_": 0, "ghs_": 0,
    "ghr_": 0, "github_pat_": 0, "xox": 0, "_live_": 2, "sk-": 0, "AIza": 0, "-----BEGIN": 0,
    "eyJ": 0,
}  # fmt: skip


def merge_spans(spans: Iterable[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted, clipped to ``0..size`` and merged where they overlap."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        lo, hi = max(0, lo), min(size, hi)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        elif lo < hi:
            out.append((lo, hi))
    return out


def _anchor_starts(text: str) -> list[int]:
    starts: set[int] = set()
    for anchor, before in _ANCHORS.items():
        at = text.find(anchor)
        while at >= 0:
            if at >= before:
                starts.add(at - before)
            at = text.find(anchor, at + 1)
    return sorted(starts)


def _plausible(kind: str, text: str) -> bool:
    """Generic-prefix kinds must also look random (mixed case and digits)."""
    if kind != "openai_api_key":
        return True
    body = text[3:]
    return bool(_DIGIT.search(body) and _UPPER.search(body) and _LOWER.search(body))


def _prefix(kind: str, text: str) -> str:
    return next((p for p in _SECRETS[kind][1] if text.startswith(p)), "")


def find_secrets(text: str) -> list[Finding]:
    """Secrets by well-known prefix; the pattern is tried only where an anchor occurs."""
    out: list[Finding] = []
    end = 0
    for start in _anchor_starts(text):
        if start < end:
            continue
        m = _SECRET_RE.match(text, start)
        if m is None:
            continue
        kind, value = m.lastgroup or "secret", m.group()
        if _plausible(kind, value):
            out.append(Finding("secret", kind, hint(value, _prefix(kind, value)), *m.span()))
            end = m.end()
    return out


def shannon_bits(text: str) -> float:
    """Shannon entropy of the characters of ``text``, in bits per character."""
    n = len(text)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def token_pattern(min_length: int, max_length: int) -> str:
    """Regex source for a run of ``min_length``..``max_length`` base64/url-safe characters."""
    c = _TOKEN_CHARS
    return f"(?<![{c}])[{c}]{{{min_length},{max_length}}}(?![{c}])"


@lru_cache(maxsize=32)
def _token_re(min_length: int) -> Any:
    """RE2 (linear time, no lookaround): a run of at least ``min_length`` token characters.
    RE2 is leftmost-first and the repeat greedy, so each match is a whole maximal run — what
    :func:`token_pattern`'s lookarounds select — and runs longer than the maximum are dropped
    by length afterwards."""
    opts = re2.Options()
    opts.log_errors = False
    opts.never_capture = True
    return re2.compile(f"[{_TOKEN_CHARS}]{{{min_length},}}".encode(), opts)


def token_spans(text: str, min_length: int, max_length: int) -> list[tuple[int, int]]:
    """Spans of the maximal runs of ``min_length``..``max_length`` base64/url-safe characters
    of ``text``, in order. Scanned as ASCII bytes with every other character replaced by ``?``
    (not a token character; one byte per character, so byte offsets are character offsets)."""
    data = text.encode("ascii", "replace")
    return [
        span for m in _token_re(min_length).finditer(data)
        if (span := m.span())[1] - span[0] <= max_length
    ]


def find_high_entropy(
    text: str,
    *,
    min_length: int,
    max_length: int,
    min_bits: float,
    skip: Sequence[tuple[int, int]] = (),
) -> list[Finding]:
    """Tokens of ``min_length``..``max_length`` base64/url-safe characters, mixing upper, lower
    and digits, with at least ``min_bits`` bits per character. Longer runs are blobs (the media
    guardrail's business); ``skip`` spans (already-found secrets) are not reported twice."""
    out: list[Finding] = []
    for start, end in token_spans(text, min_length, max_length):
        token = text[start:end]
        if any(s < end and start < e for s, e in skip):
            continue
        if not (_DIGIT.search(token) and _UPPER.search(token) and _LOWER.search(token)):
            continue
        if shannon_bits(token) >= min_bits:
            out.append(Finding("entropy", "high_entropy_token", hint(token), start, end))
    return out
