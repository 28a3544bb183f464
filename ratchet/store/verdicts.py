"""Verdicts and approvals in Redis: workers write, the gateway reads and resolves.

- ``keys.verdict_bucket(project, kind, i)``: hashes of a project's verdicts (event id → the
  verdict as :func:`models.verdict_stored.encode_stored` keeps it, ≈ 210 bytes; JSON stored by
  earlier releases is still read), one per kind and time bucket: allow verdicts (``a``, buckets of
  :data:`ALLOW_BUCKET_S`) are kept ``allow_ttl_s`` (``settings.verdict_allow_ttl_s``: as long
  as a caller may look them up); every other verdict (``n``, buckets of :data:`HELD_BUCKET_S`)
  is kept ``ttl_s`` (``settings.verdict_ttl_s``: approvals need them). A verdict lives at least
  its TTL and less than its TTL plus one bucket. The durable record of every verdict is the
  ``verdicts`` Kafka topic. One script call saves a project's verdicts of a batch
  (``lua/save_verdicts.lua``), one looks an id up (``lua/verdict_get.lua``); both Cluster-safe
  (one hash tag per project).
- ``keys.verdict(project, event)``: the per-event key of the layout before buckets; still read
  (on a miss in the buckets) so verdicts stored by an older release stay visible until they expire.
- ``keys.paused(project)``: sorted set of paused event ids, score = ``decided_at``;
  ``keys.paused_by_agent(project, agent)`` the same for one agent's.
- ``keys.approval(project, event)``: a human's decision once a paused event is resolved.

:meth:`VerdictStore.resolve` is atomic (``lua/approval_resolve.lua`` on the paused set, the
approval key and the decision stream, one hash tag: a Redis Cluster runs it on one slot, where
redis-py's cluster client cannot WATCH), so of two concurrent approvals of the same event exactly
one succeeds; the other sees ``ALREADY_DECIDED``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from models.sanitize import is_display_safe
from models.verdict import Verdict
from models.verdict_stored import decode_stored, encode_stored
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore, reply_text
from ratchet.store.round import Op, Round, ScriptCall
from ratchet.store.scripts import scripts_for

__all__ = [
    "ALLOW_BUCKET_S",
    "HELD_BUCKET_S",
    "Approval",
    "PausedPage",
    "Resolution",
    "VerdictStore",
    "bucket_expiry",
]

log = logging.getLogger("ratchet.verdicts")


class Resolution(enum.Enum):
    RESOLVED = "resolved"
    #: The event is not paused and was never resolved (unknown, expired or not a pause).
    NOT_PAUSED = "not_paused"
    #: Someone resolved it already.
    ALREADY_DECIDED = "already_decided"


@dataclass(frozen=True, slots=True)
class Approval:
    decision: str
    reason: str
    actor: str
    decided_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "actor": self.actor,
            "decided_at": self.decided_at,
        }


@dataclass(frozen=True, slots=True)
class PausedPage:
    verdicts: list[dict[str, Any]]
    #: Opaque cursor of the next page, or ``None`` at the end.
    next_cursor: str | None


def _encode_cursor(score: float, member: str) -> str:
    return f"{score!r}:{member}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """The (score, member) of a cursor :func:`_encode_cursor` wrote; ``ValueError`` for any
    other text (``float`` alone would take ``1_0``, ``١`` or ``" 1"`` as positions)."""
    head, sep, member = cursor.partition(":")
    try:
        score = float(head)
    except ValueError:
        raise ValueError("cursor is not one this API returned") from None
    if (not sep or not math.isfinite(score) or repr(score) != head
            or not 1 <= len(member) <= 128 or not is_display_safe(member)):
        raise ValueError("cursor is not one this API returned")
    return score, member


#: Width of an allow-verdict bucket, seconds (a lookup reads allow_ttl / width + 2 buckets).
ALLOW_BUCKET_S = 600
#: Width of a bucket of the other verdicts (flag, pause, reject), seconds.
HELD_BUCKET_S = 14_400


def bucket_expiry(index: int, width_s: int, ttl_s: int) -> int:
    """Unix second a bucket hash expires at: its end plus the TTL (so each verdict in it is kept
    at least ``ttl_s`` and less than ``ttl_s + width_s``).

    >>> bucket_expiry(10, 600, 3600)
    10200
    """
    return (index + 1) * width_s + ttl_s


#: Entries kept in a project's decision stream (about: trimmed approximately, as XADD MAXLEN ~).
DECISIONS_KEPT = 10_000


class VerdictStore(RedisStore):
    """Verdict and approval storage of one key namespace."""

    def __init__(
        self, redis: RedisClient, keys: Keys, *, ttl_s: int = 86_400, allow_ttl_s: int = 3_600
    ) -> None:
        self.redis = redis
        self.keys = keys
        #: How far back lookups read (the writers' TTLs: give the gateway the workers' settings).
        self.ttl_s = ttl_s
        self.allow_ttl_s = allow_ttl_s
        scripts = scripts_for(redis)
        self._save_script: AsyncScript = scripts["save_verdicts"]
        self._get_script: AsyncScript = scripts["verdict_get"]
        self._cluster = isinstance(redis, RedisCluster)

    def _lookup_keys(self, project_id: str, now: float) -> list[str]:
        """Every bucket that may hold a verdict decided up to now (+ one bucket of clock skew),
        both kinds, newest first."""
        spans: list[tuple[int, str, int]] = []
        for kind, width, ttl in (("a", ALLOW_BUCKET_S, self.allow_ttl_s),
                                 ("n", HELD_BUCKET_S, self.ttl_s)):
            newest = int((now + width) // width)
            oldest = int((now - ttl - width) // width)
            spans.extend((i * width, kind, i) for i in range(newest, oldest - 1, -1))
        spans.sort(reverse=True)
        bucket = self.keys.verdict_bucket
        return [bucket(project_id, kind, i) for _, kind, i in spans]

    def _announce(
        self, pipe: Any, project_id: str, kind: str, body: bytes, ttl_s: int | None
    ) -> None:
        """Queue one entry of the project's decision stream (capped, expires with its verdicts)."""
        key = self.keys.decisions(project_id)
        pipe.xadd(key, {"kind": kind, "body": body}, maxlen=DECISIONS_KEPT, approximate=True)
        if ttl_s is not None:
            pipe.expire(key, ttl_s)

    async def last_decision_id(self, project_id: str) -> str:
        """The id of the project's newest decision entry (``0-0`` when there is none)."""
        newest = await self.redis.xrevrange(self.keys.decisions(project_id), count=1)
        return reply_text(newest[0][0]) if newest else "0-0"

    async def read_decisions(
        self, project_id: str, after: str, block_ms: int, count: int = 100
    ) -> list[tuple[str, str, bytes]]:
        """Decision entries newer than ``after`` as ``(id, kind, JSON body)``, waiting up to
        ``block_ms`` for the first one (keep it under the client's command timeout; 0 = answer
        at once: a blocking read keeps a pooled connection busy while it waits)."""
        got: list[Any] = cast(list[Any], await self.redis.xread(
            {self.keys.decisions(project_id): after}, count=count,
            block=block_ms if block_ms > 0 else None))
        out: list[tuple[str, str, bytes]] = []
        for _, entries in got or ():
            for entry_id, fields in entries:
                out.append((reply_text(entry_id), reply_text(fields[b"kind"]), bytes(fields[b"body"])))
        return out

    async def save_many(
        self, verdicts: Sequence[Verdict], ttl_s: int, *, bodies: Sequence[bytes] | None = None,
        before: Sequence[Op] = (), after: Sequence[Op] = (),
    ) -> list[Any]:
        """Store verdicts; paused ones also go to their project's paused index.

        An event id belongs to one agent per project: a stored verdict of ANOTHER agent under the
        same (project, event id) is never overwritten (the verdict is logged and dropped), one
        of the same agent is (a redelivery). ``bodies[i]``, when given, is what is kept for
        ``verdicts[i]``, already encoded by the caller (``encode_stored(verdicts[i])``; any
        bytes :func:`~models.verdict_stored.decode_stored` reads, JSON included). ``ttl_s`` is how long non-allow verdicts are kept; allow
        verdicts are kept ``allow_ttl_s`` (constructor). One ``save_verdicts.lua`` call per
        project of the batch (pipelined; one hash per kind and time bucket), then the paused
        index in a pipeline (only when something paused).

        ``before`` / ``after``: other ops (the engine's service-mode writes; the replies to
        waiting callers) sent in the same round trip, ``after`` only once the verdicts are
        saved — in the same pipeline when it runs in order and nothing but allow verdicts and
        redeliveries is saved, else in a round of its own afterwards. Returns the answers of
        ``before`` then ``after``.
        """
        if not verdicts:
            return await Round(self.redis).extend_run([*before, *after])
        if bodies is None:
            bodies = [encode_stored(v) for v in verdicts]
        rnd = Round(self.redis)
        rnd.extend(before)
        together = rnd.ordered and all(v.action == "allow" or v.duplicate for v in verdicts)
        refused = await self._save_buckets(verdicts, bodies, ttl_s, rnd, after if together else ())
        out = rnd.answers[: len(before)]
        if together:
            out += rnd.answers[len(rnd.ops) - len(after):] if after else []
        if refused:
            log.warning(
                "%d verdicts not stored: another agent's verdict holds their event id (%s)",
                len(refused), ", ".join(sorted({verdicts[i].event_id for i in refused})[:5]),
            )
        decided = [
            i for i, v in enumerate(verdicts)
            if v.action != "allow" and not v.duplicate and i not in refused
        ]
        if decided:
            await self._announce_decided(verdicts, decided, ttl_s)
        if after and not together:
            out += await Round(self.redis).extend_run(after)
        return out

    async def _announce_decided(
        self, verdicts: Sequence[Verdict], decided: Sequence[int], ttl_s: int,
    ) -> None:
        """Non-allow verdicts: announced (their JSON: what decision streams send), and paused
        ones indexed (one pipeline)."""
        paused = [verdicts[i] for i in decided if verdicts[i].action == "pause"]
        newest: dict[str, float] = {}  # per index key: the project's and each agent's
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in decided:
                self._announce(pipe, verdicts[i].project_id, "verdict",
                               orjson.dumps(verdicts[i].to_dict()), ttl_s)
            for v in paused:
                keys = [self.keys.paused(v.project_id)]
                if v.agent_id:
                    keys.append(self.keys.paused_by_agent(v.project_id, v.agent_id))
                for key in keys:
                    pipe.zadd(key, {v.event_id: v.decided_at})
                    newest[key] = max(newest.get(key, 0.0), v.decided_at)
            for key, at in newest.items():
                # entries whose verdict has expired are dropped, so the index stays bounded
                pipe.zremrangebyscore(key, "-inf", f"({at - ttl_s}")
                pipe.expire(key, ttl_s)
            await pipe.execute()

    async def _save_buckets(
        self, verdicts: Sequence[Verdict], bodies: Sequence[bytes], ttl_s: int,
        rnd: Round, after: Sequence[Op],
    ) -> set[int]:
        """One ``save_verdicts.lua`` call per project, added to ``rnd`` with ``after`` behind
        them; runs the round: indexes refused."""
        by_project: dict[str, list[int]] = {}
        for i, v in enumerate(verdicts):
            by_project.setdefault(v.project_id, []).append(i)
        calls: list[tuple[list[str], list[Any]]] = []
        bucket = self.keys.verdict_bucket
        allow_ttl = min(self.allow_ttl_s, ttl_s)
        now = time.time()  # the wall clock, not decided_at (a replay may decide in the past)
        a = int(now // ALLOW_BUCKET_S)
        n = int(now // HELD_BUCKET_S)
        for project_id, indices in by_project.items():
            args: list[Any] = [
                bucket_expiry(a, ALLOW_BUCKET_S, allow_ttl), bucket_expiry(n, HELD_BUCKET_S, ttl_s),
                "".join("a" if verdicts[i].action == "allow" else "n" for i in indices),
            ]
            for i in indices:
                args.append(verdicts[i].event_id)
                args.append(bodies[i])
            calls.append(([bucket(project_id, "a", a), bucket(project_id, "n", n)], args))
        at = rnd.extend([ScriptCall(self._save_script, k, a) for k, a in calls])
        rnd.extend(after)
        got = await rnd.run()
        answers = [got[i] for i in at]
        refused: set[int] = set()
        for (_, indices), refused_at in zip(by_project.items(), answers, strict=True):
            refused.update(indices[int(j) - 1] for j in refused_at)
        return refused

    async def get(self, project_id: str, event_id: str) -> dict[str, Any] | None:
        """The stored verdict as a JSON object, or ``None`` (unknown, undecided or expired)."""
        raw = await self._get_raw(project_id, event_id, time.time())
        if raw is None:
            return None
        return decode_stored(raw)

    async def _get_raw(self, project_id: str, event_id: str, now: float) -> bytes | None:
        keys = self._lookup_keys(project_id, now)
        legacy = self.keys.verdict(project_id, event_id)
        if self._cluster:  # the legacy key lives on another slot: a second read on a miss
            raw = await self._get_script(keys=keys, args=[event_id, 0])
            if raw is None:
                raw = await self.redis.get(legacy)
        else:
            raw = await self._get_script(keys=[*keys, legacy], args=[event_id, 1])
        return cast(bytes | None, raw)

    async def approval(self, project_id: str, event_id: str) -> Approval | None:
        raw = await self.redis.get(self.keys.approval(project_id, event_id))
        if raw is None:
            return None
        d = orjson.loads(raw)
        return Approval(d["decision"], d["reason"], d["actor"], float(d["decided_at"]))

    async def approvals(
        self, project_id: str, event_ids: Sequence[str], chunk: int = 1000
    ) -> dict[str, Approval]:
        """The human decisions recorded for ``event_ids`` (absent: none), pipelined in chunks
        (``ratchet tune --labels-from-approvals``)."""
        out: dict[str, Approval] = {}
        for start in range(0, len(event_ids), chunk):
            part = event_ids[start : start + chunk]
            async with self.redis.pipeline(transaction=False) as pipe:  # cluster-safe
                for event_id in part:
                    pipe.get(self.keys.approval(project_id, event_id))
                raws = await pipe.execute()
            for event_id, raw in zip(part, raws, strict=True):
                if raw is not None:
                    d = orjson.loads(raw)
                    out[event_id] = Approval(d["decision"], d["reason"], d["actor"],
                                             float(d["decided_at"]))
        return out

    async def list_paused(
        self, project_id: str, limit: int = 100, cursor: str | None = None,
        agent_id: str | None = None,
    ) -> PausedPage:
        """Paused verdicts oldest first (``agent_id``: that agent's only); ``cursor`` continues
        after the last page's last item.

        Raises :class:`ValueError` for a cursor this method did not produce.
        """
        project_key = self.keys.paused(project_id)
        key = project_key if agent_id is None else self.keys.paused_by_agent(project_id, agent_id)
        after = _decode_cursor(cursor) if cursor else None
        low: float | str = after[0] if after else "-inf"
        picked: list[tuple[str, float]] = []
        stale: list[str] = []  # in the agent's index, no longer in the project's
        offset, chunk = 0, limit + 1
        while len(picked) <= limit:
            rows = cast(list[tuple[Any, float]], await self.redis.zrangebyscore(
                key, low, "+inf", start=offset, num=chunk, withscores=True
            ))
            members = [m.decode() if isinstance(m, bytes) else str(m) for m, _ in rows]
            gone: set[str] = set()
            if key != project_key and members:
                # the project's index is the truth (pruned on every pause of the project, and
                # by whatever resolves an event): an agent's entry it lacks is not paused
                live = await self.redis.zmscore(project_key, members)
                gone = {m for m, score in zip(members, live, strict=True) if score is None}
                stale += gone
            for member, (_, score) in zip(members, rows, strict=True):
                if member in gone or (after and score == after[0] and member <= after[1]):
                    continue  # stale; or a tie on the cursor's score the last page returned
                picked.append((member, float(score)))
            if len(rows) < chunk:
                break
            offset += len(rows)
        if stale:  # after the paging: removing earlier would shift the offsets
            await self.redis.zrem(key, *stale)
        more = len(picked) > limit
        picked = picked[:limit]
        verdicts: list[dict[str, Any]] = []
        if picked:
            now = time.time()
            raws = await asyncio.gather(
                *(self._get_raw(project_id, member, now) for member, _ in picked))
            for (member, score), raw in zip(picked, raws):
                if raw is not None:
                    verdicts.append(decode_stored(raw))
                else:
                    verdicts.append({"event_id": member, "decided_at": score, "expired": True})
        next_cursor = _encode_cursor(picked[-1][1], picked[-1][0]) if more and picked else None
        return PausedPage(verdicts, next_cursor)

    async def resolve(
        self, project_id: str, event_id: str, approval: Approval, ttl_s: int,
        agent_id: str | None = None,
    ) -> tuple[Resolution, float]:
        """Atomically take a paused event out of the index (and out of ``agent_id``'s, the
        agent of its stored verdict) and record the human decision.

        Returns the outcome and the event's paused-index score (to undo with :meth:`unresolve`).
        """
        body = orjson.dumps({"event_id": event_id, **approval.to_dict()})
        by_agent = [self.keys.paused_by_agent(project_id, agent_id)] if agent_id else []
        code, score = await scripts_for(self.redis)["approval_resolve"](
            keys=[self.keys.paused(project_id), self.keys.approval(project_id, event_id),
                  self.keys.decisions(project_id), *by_agent],
            args=[event_id, orjson.dumps(approval.to_dict()), ttl_s, body, DECISIONS_KEPT],
        )
        outcome = {0: Resolution.RESOLVED, 1: Resolution.ALREADY_DECIDED}.get(
            int(code), Resolution.NOT_PAUSED)
        return outcome, float(score)

    async def unresolve(self, project_id: str, event_id: str, score: float,
                        agent_id: str | None = None, ttl_s: int | None = None) -> None:
        """Undo :meth:`resolve` (the decision could not be published): pause the event again
        (the indexes get ``ttl_s`` again: resolving the last entry of one deleted it)."""
        keys = [self.keys.paused(project_id)]
        if agent_id:
            keys.append(self.keys.paused_by_agent(project_id, agent_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.approval(project_id, event_id))
            for key in keys:
                pipe.zadd(key, {event_id: score})
                pipe.expire(key, ttl_s if ttl_s is not None else self.ttl_s)
            self._announce(pipe, project_id, "approval_undone",
                           orjson.dumps({"event_id": event_id}), None)
            await pipe.execute()
