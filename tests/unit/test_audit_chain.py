"""The pure audit chain: hashing, actor rules, and the verifier's reports."""

from __future__ import annotations

from typing import Any

import pytest

from models.audit import GENESIS, build_entry, entry_hash, iso_utc, validate_actor, verify_chain
from models.errors import ValidationError


def chain(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    prev = GENESIS
    for i in range(1, n + 1):
        e = build_entry(project_id="p1", seq=i, at_ms=1_700_000_000_000 + i, action="agent.created",
                        actor="cli", target=f"agent:a{i}", details={"n": i}, prev_hash=prev,
                        entry_id=f"id{i}")
        out.append(e.to_dict())
        prev = e.hash
    return out


def test_hash_covers_every_field_but_itself() -> None:
    e = chain(1)[0]
    assert e["hash"] == entry_hash(e) and len(e["hash"]) == 64
    for name in ("id", "project_id", "seq", "at", "action", "actor", "target", "details",
                 "prev_hash"):
        changed = dict(e, **{name: "x"})
        assert entry_hash(changed) != e["hash"], name


def test_intact_chain_verifies() -> None:
    report = verify_chain(chain(5), start_prev_hash=GENESIS, start_seq=1, project_id="p1")
    assert report.ok and report.checked == 5 and report.last_seq == 5


def test_edit_is_detected_at_its_seq() -> None:
    entries = chain(5)
    entries[2]["details"] = {"n": 999}
    report = verify_chain(entries, start_prev_hash=GENESIS, start_seq=1)
    assert [(p.seq, p.kind) for p in report.problems] == [(3, "hash_mismatch")]


def test_edit_with_recomputed_hash_breaks_the_next_link() -> None:
    entries = chain(5)
    entries[2]["details"] = {"n": 999}
    entries[2]["hash"] = entry_hash(entries[2])
    report = verify_chain(entries, start_prev_hash=GENESIS, start_seq=1)
    assert [(p.seq, p.kind) for p in report.problems] == [(4, "broken_link")]


def test_deletion_is_a_gap() -> None:
    entries = chain(5)
    del entries[1]
    report = verify_chain(entries, start_prev_hash=GENESIS, start_seq=1)
    kinds = {(p.seq, p.kind) for p in report.problems}
    assert (2, "gap") in kinds and (3, "broken_link") in kinds


def test_reorder_is_detected() -> None:
    entries = chain(5)
    entries[1], entries[2] = entries[2], entries[1]
    report = verify_chain(entries, start_prev_hash=GENESIS, start_seq=1)
    assert not report.ok
    assert {p.seq for p in report.problems} >= {2, 3}


def test_checkpoint_start_after_pruning() -> None:
    entries = chain(5)
    kept = entries[2:]
    assert verify_chain(kept, start_prev_hash=entries[1]["hash"], start_seq=3).ok
    assert not verify_chain(kept, start_prev_hash=GENESIS, start_seq=1).ok


@pytest.mark.parametrize("actor", ["cli", "system", "apikey:0123456789ab", "signup:1.2.3.4",
                                   "operator:alice"])
def test_actors_accepted(actor: str) -> None:
    assert validate_actor(actor) == actor


@pytest.mark.parametrize("actor", ["rk_abcdefghijklmnop", "as_secret", "apikey:rk_live", "",
                                   "cli ", "apikey:0123456789abcdef"])
def test_secret_like_actors_refused(actor: str) -> None:
    with pytest.raises(ValidationError):
        validate_actor(actor)


def test_unknown_action_and_bad_details_refused() -> None:
    base: dict[str, Any] = {"project_id": "p", "seq": 1, "at_ms": 0, "actor": "cli", "target": "t",
                                "prev_hash": GENESIS, "entry_id": "i"}
    with pytest.raises(ValidationError, match="unknown audit action"):
        build_entry(action="thing.done", details={}, **base)
    with pytest.raises(ValidationError, match="details"):
        build_entry(action="agent.created", details={"x": float("nan")}, **base)
    with pytest.raises(ValidationError, match="details"):
        build_entry(action="agent.created", details={"x": "y" * 10_000}, **base)


def test_iso_utc() -> None:
    assert iso_utc(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
