"""Media guardrail: large blobs (data URIs, base64, binary) and disallowed MIME types."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from models.guardrails.media import MediaConfig, check_media, parse_media
from models.guardrails.paths import walk

CFG = MediaConfig(max_blob_bytes=4_096)
PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(200)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rules(payload: dict[str, Any], cfg: MediaConfig = CFG) -> dict[str, dict[str, Any]]:
    return {r.detail["rule"]: dict(r.detail) for r in check_media(cfg, walk(payload))}


def test_large_data_uri_base64_and_binary_are_blobs() -> None:
    big = random.Random(3).randbytes(6_000)
    found = rules(
        {
            "uri": "data:application/octet-stream;base64," + b64(big),
            "raw": b64(big),
            "wrapped": "\n".join(b64(big)[i : i + 76] for i in range(0, 8_000, 76)),
            "bin": "\x00\x01\x02binary\x07" * 1_000,
        }
    )
    blob = found["media.blob"]
    assert blob["count"] == 4
    assert blob["kinds"] == ["data_uri", "base64", "binary"]
    assert blob["largest_bytes"] >= 6_000 and blob["limit_bytes"] == 4_096
    assert "media.mime" not in found


def test_small_base64_and_long_plain_text_are_allowed() -> None:
    assert rules({"thumb": "data:image/png;base64," + b64(PNG)}) == {}
    assert rules({"avatar": b64(random.Random(4).randbytes(2_000))}) == {}  # 2.7 K chars, 2 KB
    assert rules({"doc": "Lorem ipsum dolor sit amet. " * 2_000}) == {}


def test_disallowed_mime_types_from_fields_data_uris_and_sniffing() -> None:
    found = rules(
        {
            "attachment": {"content_type": "application/x-msdownload; name=setup.exe"},
            "file": {"mimeType": "application/pdf"},
            "also": {"Content-Type": "application/x-sh"},
            "uri": "data:application/x-msdownload;base64," + b64(PE),
            "disguised": "data:image/png;base64," + b64(PE),
            "raw": b64(PE),
        }
    )
    mime = found["media.mime"]
    assert mime["count"] == 5
    assert mime["mime_types"] == [
        "application/x-msdownload",
        "application/x-sh",
        "application/vnd.microsoft.portable-executable",
    ]
    assert mime["paths"] == [
        "attachment.content_type",
        "also.Content-Type",
        "uri",
        "disguised",
        "raw",
    ]


def test_allow_list_and_wildcards() -> None:
    cfg = parse_media({"allow_mime_types": ["image/*"], "deny_mime_types": []}, "g", CFG)
    assert rules({"a": "data:image/png;base64," + b64(PNG)}, cfg) == {}
    found = rules({"a": {"mime_type": "application/pdf"}, "b": "data:text/html,<b>x</b>"}, cfg)
    assert found["media.mime"]["mime_types"] == ["application/pdf", "text/html"]


def test_sniffing_can_be_switched_off() -> None:
    cfg = parse_media({"sniff": False}, "g", CFG)
    assert rules({"raw": b64(PE)}, cfg) == {}
    assert rules({"raw": b64(PE)}) != {}


def test_not_a_mime_field_or_not_a_mime_type() -> None:
    assert rules({"note": "application/x-msdownload is blocked by policy"}) == {}
    assert rules({"content_type": "whatever"}) == {}
    assert rules({"hexid": "4d5a90000300000004000000ffff0000"}) == {}  # hex, not base64 of MZ


def test_detail_is_sizes_and_types_never_content() -> None:
    payload = {"uri": "data:text/plain;base64," + b64(b"TOP-SECRET " * 1_000)}
    text = json.dumps([r.to_dict() for r in check_media(CFG, walk(payload))])
    assert "VE9QLVNFQ1JFV" not in text and "TOP-SECRET" not in text


def test_disabled() -> None:
    assert (
        check_media(MediaConfig(enabled=False), walk({"a": {"mime_type": "application/x-sh"}}))
        == []
    )
