"""Media guardrail: large embedded blobs, and disallowed MIME types.

- ``media.blob``: a ``data:`` URI, a base64 string or a binary-looking string (control
  characters) whose (decoded) size is over ``max_blob_bytes``. Plain long text is not a blob.
- ``media.mime``: a MIME type that ``deny_mime_types`` lists, or that ``allow_mime_types``
  (when not empty) does not, found in a ``data:`` URI, in a field named like ``mime_type`` /
  ``content_type`` (see ``mime_fields``; case, ``-`` and ``_`` ignored) or — with ``sniff`` —
  in the first bytes of base64 content (an executable sent as ``data:image/png``).

Patterns are ``type/subtype`` or ``type/*``. Only the length and the first bytes of a blob are
read, so a 4 MB string costs no more than a short one.

>>> from models.guardrails.paths import walk
>>> cfg = MediaConfig(max_blob_bytes=1_000)
>>> big = "data:image/png;base64," + "iVBORw0KGgo" + "A" * 2_000
>>> [(r.detail["rule"], r.detail["kinds"]) for r in check_media(cfg, walk({"img": big}))]
[('media.blob', ['data_uri'])]
>>> check_media(cfg, walk({"img": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=="}))
[]
>>> r, = check_media(cfg, walk({"file": {"content_type": "application/x-msdownload"}}))
>>> (r.detail["rule"], r.detail["mime_types"], r.detail["paths"])
('media.mime', ['application/x-msdownload'], ['file.content_type'])
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from models.errors import ValidationError
from models.guardrails._schema import (
    Fields,
    as_action,
    as_bool,
    as_str_list,
    check_keys,
    ints,
)
from models.guardrails.paths import Leaf
from models.guardrails.redact import MAX_EXAMPLES
from models.sanitize import shown
from models.verdict import Reason

__all__ = ["NAME", "SOURCE", "MediaConfig", "check_media", "media_to_dict", "parse_media"]

NAME = "media"
SOURCE = f"guardrail:{NAME}"
_KEYS = (
    "enabled",
    "action",
    "max_blob_bytes",
    "deny_mime_types",
    "allow_mime_types",
    "mime_fields",
    "sniff",
)
DEFAULT_DENY: tuple[str, ...] = (
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/x-dosexec",
    "application/vnd.microsoft.portable-executable",
    "application/x-msi",
    "application/x-executable",
    "application/x-elf",
    "application/x-sharedlib",
    "application/x-mach-binary",
    "application/java-archive",
    "application/java-vm",
    "application/x-sh",
    "application/x-shellscript",
    "application/x-bat",
    "application/hta",
)
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/(?:\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126})")
_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_B64_HEAD = re.compile(r"[A-Za-z0-9+/_-]{24}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
#: First bytes of common formats -> MIME type.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"MZ\x90\x00", "application/vnd.microsoft.portable-executable"),
    (b"\x7fELF", "application/x-elf"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xca\xfe\xba\xbe", "application/java-vm"),
    (b"#!/", "application/x-sh"),
    (b"PK\x03\x04", "application/zip"),
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG", "image/png"),
    (b"GIF8", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
)
_SNIFF_CHARS = 24  # 18 bytes: enough for every magic number above
#: The base64 characters each magic number fixes (standard and url-safe alphabets): a cheap
#: ``startswith`` gate before decoding anything.
_MAGIC_B64: tuple[str, ...] = tuple(
    sorted(
        {
            alphabet(magic)[: len(magic) * 8 // 6].decode()
            for magic, _mime in _MAGIC
            for alphabet in (base64.b64encode, base64.urlsafe_b64encode)
        }
    )
)
_BINARY_SAMPLE = 4_096


@dataclass(frozen=True, slots=True)
class MediaConfig:
    enabled: bool = True
    action: str = "flag"
    max_blob_bytes: int = 512 * 1024
    deny_mime_types: tuple[str, ...] = DEFAULT_DENY
    #: Empty: every type not denied is allowed.
    allow_mime_types: tuple[str, ...] = ()
    mime_fields: tuple[str, ...] = ("mime_type", "content_type", "media_type", "mimetype")
    sniff: bool = True


def _mime_list(value: Any, path: str) -> tuple[str, ...]:
    items = as_str_list(value, path, max_chars=128)
    for i, item in enumerate(items):
        if not _MIME.fullmatch(item):
            where = f"{path}[{i}]"
            raise ValidationError(
                f"{where} must be a lowercase MIME type like 'image/png' or 'image/*', "
                f"got {shown(item)}",
                where,
            )
    return items


def parse_media(
    table: Mapping[str, Any], path: str, base: MediaConfig, *, override: bool = False
) -> MediaConfig:
    check_keys(table, _KEYS, path)
    f = Fields(table, path)
    return MediaConfig(
        enabled=f.get("enabled", base.enabled, as_bool),
        action=f.get("action", base.action, as_action),
        max_blob_bytes=f.get("max_blob_bytes", base.max_blob_bytes, ints(64, 64 * 1024 * 1024)),
        deny_mime_types=f.get("deny_mime_types", base.deny_mime_types, _mime_list),
        allow_mime_types=f.get("allow_mime_types", base.allow_mime_types, _mime_list),
        mime_fields=f.get("mime_fields", base.mime_fields, _field_names),
        sniff=f.get("sniff", base.sniff, as_bool),
    )


def _field_names(value: Any, path: str) -> tuple[str, ...]:
    return as_str_list(value, path, max_items=32, max_chars=64)


def media_to_dict(cfg: MediaConfig) -> dict[str, Any]:
    return {
        "enabled": cfg.enabled,
        "action": cfg.action,
        "max_blob_bytes": cfg.max_blob_bytes,
        "deny_mime_types": list(cfg.deny_mime_types),
        "allow_mime_types": list(cfg.allow_mime_types),
        "mime_fields": list(cfg.mime_fields),
        "sniff": cfg.sniff,
    }


@lru_cache(maxsize=4_096)
def _norm_field(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


@lru_cache(maxsize=64)
def _field_set(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(_norm_field(f) for f in names)


def _matches(mime: str, patterns: Sequence[str]) -> bool:
    kind = mime.split("/", 1)[0]
    return any(p == mime or p == f"{kind}/*" for p in patterns)


def _allowed(cfg: MediaConfig, mime: str) -> bool:
    if _matches(mime, cfg.deny_mime_types):
        return False
    return not cfg.allow_mime_types or _matches(mime, cfg.allow_mime_types)


def _clean_mime(raw: str) -> str | None:
    mime = raw.split(";", 1)[0].strip().lower()
    return mime if _MIME.fullmatch(mime) and not mime.endswith("/*") else None


def _sniff(b64: str) -> str | None:
    head = b64[:_SNIFF_CHARS]
    if not _B64_HEAD.fullmatch(head):
        return None
    try:
        raw = base64.b64decode(head.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return next((mime for magic, mime in _MAGIC if raw.startswith(magic)), None)


def _inspect(cfg: MediaConfig, text: str, is_mime_field: bool) -> tuple[str, int, list[str]]:
    """(blob kind or "", its size in bytes, MIME types found) of one string."""
    mimes: list[str] = []
    if is_mime_field:
        mime = _clean_mime(text[:256])
        return "", 0, [mime] if mime else []
    header, comma, data = "", "", ""
    if text[:1] in "dD" and text[:5].lower() == "data:":
        header, comma, data = text[:1_024].partition(",")
    if comma:
        declared = _clean_mime(header[5:]) or "text/plain"
        mimes.append(declared)
        is_b64 = header.lower().endswith(";base64")
        if is_b64 and cfg.sniff and (sniffed := _sniff(data)) and sniffed != declared:
            mimes.append(sniffed)
        size = (len(text) - len(header) - 1) * (3 if is_b64 else 4) // 4
        return ("data_uri" if size > cfg.max_blob_bytes else ""), size, mimes
    if cfg.sniff and text.startswith(_MAGIC_B64) and (sniffed := _sniff(text)):
        mimes.append(sniffed)
    if len(text) <= cfg.max_blob_bytes:
        return "", 0, mimes
    compact = text.replace("\n", "").replace("\r", "")
    if _B64.fullmatch(compact):
        size = len(compact) * 3 // 4
        return ("base64" if size > cfg.max_blob_bytes else ""), size, mimes
    sample = text[:_BINARY_SAMPLE]
    if "\x00" in sample or len(_CONTROL.findall(sample)) * 10 > len(sample):
        return "binary", len(text), mimes
    return "", 0, mimes


def _plain(text: str, most: int, sniff: bool) -> bool:
    """True when :func:`_inspect` certainly has nothing to note for ``text`` (not in a MIME
    field, at least one character): no ``data:`` start, no magic-number start to sniff, not
    over the blob size — so the usual string costs no call of it."""
    return text[0] not in "dD" and len(text) <= most and not (
        sniff and text.startswith(_MAGIC_B64))


def check_media(cfg: MediaConfig, leaves: Sequence[Leaf]) -> list[Reason]:
    """``leaves`` from :func:`models.guardrails.paths.walk` over the event's payload."""
    if not cfg.enabled:
        return []
    fields: frozenset[str] | None = None
    # the tallies exist once something is noted (most payloads: never)
    blobs: dict[str, Any] | None = None
    bad: dict[str, Any] = {}
    sniff, most = cfg.sniff, cfg.max_blob_bytes
    for leaf in leaves:
        text = leaf.value
        if not isinstance(text, str) or len(text) < 8:
            continue
        if fields is None:
            fields = _field_set(cfg.mime_fields)
        is_mime_field = _norm_field(leaf.name) in fields
        if not is_mime_field and _plain(text, most, sniff):
            continue
        kind, size, mimes = _inspect(cfg, text, is_mime_field)
        if not kind and not mimes:  # the usual string: nothing to note
            continue
        if blobs is None:
            blobs = {"count": 0, "paths": [], "kinds": [], "largest_bytes": 0}
            bad = {"count": 0, "paths": [], "mime_types": []}
        if kind:
            blobs["count"] += 1
            blobs["largest_bytes"] = max(blobs["largest_bytes"], size)
            _note(blobs, "kinds", kind)
            _note(blobs, "paths", leaf.path)
        denied = [m for m in mimes if not _allowed(cfg, m)]
        if denied:
            bad["count"] += 1
            _note(bad, "paths", leaf.path)
            for m in denied:
                _note(bad, "mime_types", m)
    out: list[Reason] = []
    if blobs is None:
        return out
    if blobs["count"]:
        detail = {"rule": "media.blob", "limit_bytes": cfg.max_blob_bytes, **blobs}
        out.append(Reason(SOURCE, cfg.action, detail))
    if bad["count"]:
        out.append(Reason(SOURCE, cfg.action, {"rule": "media.mime", **bad}))
    return out


def _note(acc: dict[str, Any], key: str, value: str) -> None:
    if value not in acc[key] and len(acc[key]) < MAX_EXAMPLES:
        acc[key].append(value)
