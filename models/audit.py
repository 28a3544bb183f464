"""Audit entries and their hash chain (docs/design.md §5). Pure: no I/O, no clock reads.

An entry is structured JSON; ``hash`` is the SHA-256 (hex) of the canonical JSON
(:func:`models.signing.canonical_json`) of every other field, and ``prev_hash`` is the hash of
the previous entry of the SAME project (:data:`GENESIS` for the first). Editing, deleting or
reordering any stored entry therefore breaks the chain at a seq :func:`verify_chain` reports.

>>> e1 = build_entry(project_id="p", seq=1, at_ms=0, action="project.created", actor="cli",
...                  target="project:p", details={}, prev_hash=GENESIS, entry_id="a1")
>>> e2 = build_entry(project_id="p", seq=2, at_ms=1000, action="agent.created", actor="cli",
...                  target="agent:x", details={}, prev_hash=e1.hash, entry_id="a2")
>>> verify_chain([e1.to_dict(), e2.to_dict()], start_prev_hash=GENESIS, start_seq=1).ok
True
>>> bad = dict(e2.to_dict(), details={"x": 1})
>>> verify_chain([e1.to_dict(), bad], start_prev_hash=GENESIS, start_seq=1).problems[0].seq
2
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.errors import ValidationError
from models.signing import canonical_json

__all__ = [
    "ACTIONS",
    "GENESIS",
    "AuditEntry",
    "ChainProblem",
    "ChainReport",
    "build_entry",
    "check_action_actor",
    "entry_hash",
    "iso_utc",
    "validate_actor",
    "verify_chain",
]

#: ``prev_hash`` of a project's first entry.
GENESIS = "0" * 64

#: Every action the audit log accepts (a fixed set: it is also a metric label).
ACTIONS: frozenset[str] = frozenset({
    "project.created",
    "agent.created",
    "key.rotated",
    "key.created",
    "key.revoked",
    "secret.rotated",
    "approval.approved",
    "approval.rejected",
    "policy.replaced",
    "engine.override_replaced",
    "engine.override_deleted",
    "webhook.created",
    "webhook.deleted",
    "baseline.reset",
    "chain.mode_changed",
})

_ACTOR = re.compile(r"(cli|system|apikey:[0-9a-f]{12}|signup:[A-Za-z0-9._:-]{1,64}|"
                    r"operator:[A-Za-z0-9._@-]{1,64})")
_MAX_TARGET = 300
_MAX_DETAILS_BYTES = 8 * 1024


def iso_utc(at_ms: int) -> str:
    """``at_ms`` (Unix ms) as UTC ISO 8601 with milliseconds and a ``Z``."""
    dt = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ms % 1000:03d}Z"


def validate_actor(actor: str) -> str:
    """An actor names WHO acted without revealing a secret: ``apikey:<12 hex of the key's
    SHA-256>``, ``cli``, ``system``, ``signup:<id>`` or ``operator:<name>``."""
    if not isinstance(actor, str) or not _ACTOR.fullmatch(actor):
        raise ValidationError(
            "audit actor must be 'cli', 'system', 'apikey:<12 hex>', 'signup:<id>' or "
            f"'operator:<name>' (never a key or secret), got {str(actor)[:20]!r}", "actor",
        )
    return actor


def check_action_actor(action: str, actor: str) -> None:
    """Validate what an entry will say BEFORE the audited action runs, so a bad actor or action
    cannot leave an action done but unaudited."""
    if action not in ACTIONS:
        raise ValidationError(f"unknown audit action {action!r}; known: {sorted(ACTIONS)}",
                              "action")
    validate_actor(actor)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    project_id: str
    seq: int
    at: str
    at_ms: int
    action: str
    actor: str
    target: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "project_id": self.project_id, "seq": self.seq, "at": self.at,
            "at_ms": self.at_ms, "action": self.action, "actor": self.actor,
            "target": self.target, "details": dict(self.details),
            "prev_hash": self.prev_hash, "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEntry:
        return cls(
            id=str(d["id"]), project_id=str(d["project_id"]), seq=int(d["seq"]), at=str(d["at"]),
            at_ms=int(d["at_ms"]), action=str(d["action"]), actor=str(d["actor"]),
            target=str(d["target"]), details=dict(d["details"]),
            prev_hash=str(d["prev_hash"]), hash=str(d["hash"]),
        )


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of an entry without its ``hash`` field."""
    body = {k: v for k, v in fields.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def build_entry(
    *,
    project_id: str,
    seq: int,
    at_ms: int,
    action: str,
    actor: str,
    target: str,
    details: Mapping[str, Any],
    prev_hash: str,
    entry_id: str,
) -> AuditEntry:
    """A new chained entry; raises :class:`ValidationError` for an unknown action, a bad actor,
    an over-long target or details that are not a small JSON object."""
    check_action_actor(action, actor)
    if not isinstance(target, str) or len(target) > _MAX_TARGET:
        raise ValidationError(f"audit target must be a string of at most {_MAX_TARGET} "
                              "characters", "target")
    if not isinstance(details, Mapping):
        raise ValidationError("audit details must be a JSON object", "details")
    try:
        size = len(canonical_json(dict(details)))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"audit details are not JSON: {exc}", "details") from None
    if size > _MAX_DETAILS_BYTES:
        raise ValidationError(f"audit details exceed {_MAX_DETAILS_BYTES} bytes", "details")
    fields: dict[str, Any] = {
        "id": entry_id, "project_id": project_id, "seq": seq, "at": iso_utc(at_ms),
        "at_ms": at_ms, "action": action, "actor": actor, "target": target,
        "details": dict(details), "prev_hash": prev_hash,
    }
    return AuditEntry(**fields, hash=entry_hash(fields))


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    kind: str  # "hash_mismatch" | "broken_link" | "gap" | "out_of_order" | "bad_entry" | "head"
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(
    entries: Iterable[Mapping[str, Any]],
    *,
    start_prev_hash: str,
    start_seq: int,
    project_id: str | None = None,
) -> ChainReport:
    """Walk ``entries`` (in stored order) and report every break.

    ``start_seq``/``start_prev_hash`` come from the retention checkpoint (1 and :data:`GENESIS`
    while nothing was pruned). Each entry must have the next seq, link to the previous hash and
    hash to its own ``hash``. After a break the walk re-anchors on the entry as stored, so one
    edit is reported once rather than at every later entry.
    """
    problems: list[ChainProblem] = []
    expect_seq, expect_prev = start_seq, start_prev_hash
    checked, first, last, last_hash = 0, None, None, start_prev_hash
    for raw in entries:
        checked += 1
        try:
            seq = int(raw["seq"])
            stored_hash = str(raw["hash"])
            prev = str(raw["prev_hash"])
        except (KeyError, TypeError, ValueError):
            problems.append(ChainProblem(expect_seq, "bad_entry", "entry is not an audit entry"))
            expect_seq += 1
            continue
        first = seq if first is None else first
        if seq < expect_seq:
            problems.append(ChainProblem(seq, "out_of_order",
                                         f"seq {seq} found where {expect_seq} was expected"))
        elif seq > expect_seq:
            missing = f"{expect_seq}" if seq == expect_seq + 1 else f"{expect_seq}..{seq - 1}"
            problems.append(ChainProblem(expect_seq, "gap", f"entries {missing} are missing"))
        if prev != expect_prev:
            problems.append(ChainProblem(seq, "broken_link",
                                         "prev_hash does not match the previous entry's hash"))
        if project_id is not None and raw.get("project_id") != project_id:
            problems.append(ChainProblem(seq, "bad_entry", "entry belongs to another project"))
        if entry_hash(raw) != stored_hash:
            problems.append(ChainProblem(seq, "hash_mismatch",
                                         "entry content does not match its hash (edited)"))
        expect_seq, expect_prev = seq + 1, stored_hash
        last, last_hash = seq, stored_hash
    return ChainReport(checked, first, last, last_hash, problems)
