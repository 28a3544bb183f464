"""The audit log: hash-chained per project in Redis, published to the ``audit`` topic.

Usage (anything state-changing)::

    audit = AuditLog(redis, keys, settings, sink=kafka_sink)
    await audit.append(project_id, "webhook.created", "apikey:0123456789ab",
                       "webhook:wh_...", {"url": url})

Actions are the fixed set :data:`models.audit.ACTIONS`; actors never carry a secret
(:func:`models.audit.validate_actor`).

**Order and guarantee.** Redis is the source of truth: an entry exists once
``lua/audit_append.lua`` stored it (compare-and-set on the project's chain head, so concurrent
appends — from any number of processes — never fork the chain). Only then is it published to
Kafka (topic ``audit``, key = project id), with ``audit_publish_attempts`` tries; a publish that
still fails is logged and counted (``ratchet_audit_publish_failures_total``) but does not undo or
fail the action. Every message carries ``seq``, so a consumer detects a missing one and can
re-read it from ``GET /v1/audit``.

**Retention.** Each append prunes entries older than ``audit_retention_days`` and the oldest
past ``audit_max_entries`` per project, and records the newest pruned entry's seq and hash as the
project's checkpoint; :meth:`AuditLog.verify` starts
from there, so pruning never looks like tampering while edits to retained entries still do.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from models.audit import (
    GENESIS,
    AuditEntry,
    ChainProblem,
    ChainReport,
    build_entry,
    verify_chain,
)
from models.errors import ScriptCode, UnavailableError, raise_for_code
from models.signing import canonical_json
from ratchet.config.settings import Settings
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for
from ratchet.telemetry.metrics import AUDIT_ENTRIES, AUDIT_PUBLISH_FAILURES

__all__ = ["AuditLog", "AuditPage", "AuditSink", "Checkpoint"]

log = logging.getLogger(__name__)

#: ``await sink(topic, key, value)`` publishes one message (raises on failure).
AuditSink = Callable[[str, bytes, bytes], Awaitable[None]]

_MAX_CAS_ROUNDS = 500
_PRUNE_MAX = 100
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where verification starts: the seq after, and hash of, the newest pruned entry."""

    next_seq: int
    prev_hash: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str | None


@dataclass
class AuditLog(RedisStore):
    redis: RedisClient
    keys: Keys
    settings: Settings
    sink: AuditSink | None = None
    clock: Callable[[], float] = time.time
    _locks: weakref.WeakValueDictionary[str, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary, repr=False
    )

    def __post_init__(self) -> None:
        self._append = scripts_for(self.redis)["audit_append"]

    def _keys(self, project_id: str) -> list[str]:
        k = self.keys
        return [k.audit_head(project_id), k.audit_entries(project_id),
                k.audit_times(project_id), k.audit_checkpoint(project_id)]

    async def append(
        self,
        project_id: str,
        action: str,
        actor: str,
        target: str,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Chain, store and publish one entry; returns it (with seq and hash)."""
        lock = self._locks.get(project_id)
        if lock is None:  # weakly held: a project's lock lives while someone appends
            lock = self._locks[project_id] = asyncio.Lock()
        async with lock:  # in-process appends queue up; other processes are handled by CAS
            entry = await self._store(project_id, action, actor, target, dict(details or {}))
        AUDIT_ENTRIES.labels(action=action).inc()
        await self._publish(entry)
        return entry

    async def _store(
        self, project_id: str, action: str, actor: str, target: str, details: dict[str, Any]
    ) -> AuditEntry:
        raw = await self.redis.hmget(self.keys.audit_head(project_id), ["seq", "hash", "at_ms"])
        head_seq, head_hash, head_at = int(raw[0] or 0), _text(raw[1]) or GENESIS, int(raw[2] or 0)
        retention = self.settings.audit_retention_days
        for _ in range(_MAX_CAS_ROUNDS):
            now_ms = int(self.clock() * 1000)
            at_ms = max(now_ms, head_at)  # time never runs backwards along the chain
            entry = build_entry(
                project_id=project_id, seq=head_seq + 1, at_ms=at_ms, action=action,
                actor=actor, target=target, details=details, prev_hash=head_hash,
                entry_id=f"aud_{uuid.uuid4().hex}",
            )
            cutoff = now_ms - retention * _DAY_MS if retention > 0 else 0
            result = await self._append(
                keys=self._keys(project_id),
                args=[head_seq, head_hash, entry.seq, canonical_json(entry.to_dict()), entry.hash,
                      at_ms, cutoff, _PRUNE_MAX, self.settings.audit_max_entries],
            )
            code = int(result[0])
            if code == ScriptCode.OK:
                return entry
            if code != ScriptCode.HEAD_MOVED:
                raise_for_code(code, "audit_append")
            head_seq, head_hash, head_at = int(result[1]), _text(result[2]), int(result[3])
            await asyncio.sleep(random.random() * 0.002)
        raise UnavailableError(f"audit log of project {project_id} is too busy; retry")

    async def _publish(self, entry: AuditEntry) -> None:
        if self.sink is None:
            return
        value = orjson.dumps(entry.to_dict())
        attempts = max(1, self.settings.audit_publish_attempts)
        for attempt in range(attempts):
            try:
                await self.sink(self.settings.topic_audit, entry.project_id.encode(), value)
                return
            except Exception as exc:  # noqa: BLE001  any broker failure: Redis holds the entry
                if attempt + 1 == attempts:
                    AUDIT_PUBLISH_FAILURES.inc()
                    log.error("audit entry %s seq %d not published to Kafka: %s",
                              entry.project_id, entry.seq, type(exc).__name__)
                    return
                await asyncio.sleep(0.1 * 2**attempt)

    # --- reading ----------------------------------------------------------------------------
    async def page(
        self,
        project_id: str,
        *,
        from_ms: int | None = None,
        to_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """Entries with ``from_ms <= at_ms <= to_ms``, oldest first; ``cursor`` is the opaque
        ``next_cursor`` of the previous page. Raises ``ValueError`` for a bad cursor."""
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
                raise ValueError("cursor is not one this API returned")
            start = int(cursor)
        elif from_ms is not None:
            first = await self.redis.zrange(self.keys.audit_times(project_id), from_ms, "+inf",
                                            byscore=True, offset=0, num=1)
            if not first:
                return AuditPage([], None)
            start = int(_text(first[0]))
        else:
            start = 0
        rows = await self.redis.zrange(self.keys.audit_entries(project_id), start, "+inf",
                                       byscore=True, offset=0, num=limit + 1)
        entries = [AuditEntry.from_dict(_decode(r)) for r in rows]
        if to_ms is not None:
            entries = [e for e in entries if e.at_ms <= to_ms]
        more = len(entries) > limit
        entries = entries[:limit]
        next_cursor = str(entries[-1].seq + 1) if more else None
        return AuditPage(entries, next_cursor)

    async def checkpoint(self, project_id: str) -> Checkpoint:
        raw = await self.redis.hmget(self.keys.audit_checkpoint(project_id), ["seq", "hash"])
        if raw[0] is None:
            return Checkpoint(1, GENESIS)
        return Checkpoint(int(raw[0]) + 1, _text(raw[1]))

    async def verify(self, project_id: str, batch: int = 1000) -> ChainReport:
        """Walk the retained chain from the checkpoint and compare its end with the head."""
        start = await self.checkpoint(project_id)
        key = self.keys.audit_entries(project_id)
        rows: list[dict[str, Any]] = []
        offset = 0
        while True:
            chunk = await self.redis.zrange(key, offset, offset + batch - 1)
            rows.extend(_decode(r) for r in chunk)
            if len(chunk) < batch:
                break
            offset += batch
        report = verify_chain(rows, start_prev_hash=start.prev_hash, start_seq=start.next_seq,
                              project_id=project_id)
        raw = await self.redis.hmget(self.keys.audit_head(project_id), ["seq", "hash"])
        head_seq, head_hash = int(raw[0] or 0), _text(raw[1]) or GENESIS
        last_seq = report.last_seq if report.last_seq is not None else start.next_seq - 1
        if (head_seq, head_hash) != (last_seq, report.last_hash):
            report.problems.append(ChainProblem(
                head_seq, "head",
                f"the chain ends at seq {last_seq} but the head says {head_seq} "
                "(entries removed from the end, or the head was edited)",
            ))
        return report


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _decode(raw: Any) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
