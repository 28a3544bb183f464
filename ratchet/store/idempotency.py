"""Replay protection in Redis: ``Idempotency-Key`` records and event-id fingerprints.

- :class:`IdempotencyStore` — one record per (project, API key, ``Idempotency-Key``): reserved
  atomically by ``lua/idempotency_begin.lua``, then finished by ``lua/idempotency_end.lua``
  (answer kept for ``idempotency_ttl_s``) or released (the request had no effect, a retry runs
  again).
- :class:`EventIds` — binds an event id (per project) to the fingerprint of the first
  body it was accepted with, for ``event_id_window_s``: ``lua/event_ids_claim.lua`` checks and
  binds a batch in one script call per project (one hash per project,
  :mod:`ratchet.store.event_id_buckets`), so two different bodies racing for one id cannot both
  win. The keys of the layouts before go with a project's calls until the script answers that
  none of their bindings can be live: its first answer for a project created by this release
  (``event_id_buckets.born_settled``), a window and a margin after its first binding otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript

from models.errors import RatchetError, ScriptCode, StoreError
from models.events import IngestEvent
from models.idempotency import StoredAnswer, decode_answer, encode_answer, event_fingerprint
from ratchet.store.event_id_buckets import Settled, claim_answers, claim_call
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["Begin", "BeginCode", "EventIds", "IdempotencyStore", "Reservation"]

log = logging.getLogger(__name__)


class BeginCode(enum.IntEnum):
    """Output codes of ``lua/idempotency_begin.lua``."""

    RESERVED = 0
    REPLAY = 1
    IN_PROGRESS = 2
    MISMATCH = 3
    #: The same request with other authorising headers (a single event's signature headers).
    OTHER_HEADERS = 4


@dataclass(frozen=True, slots=True)
class Reservation:
    record: str
    token: str


@dataclass(frozen=True, slots=True)
class Begin:
    code: BeginCode
    #: Set when ``code`` is RESERVED: hand it back to finish or release.
    reservation: Reservation | None = None
    #: Set when ``code`` is REPLAY.
    answer: StoredAnswer | None = None


class IdempotencyStore(RedisStore):
    def __init__(self, redis: RedisClient, keys: Keys, *, ttl_s: int, lease_s: int) -> None:
        self.keys = keys
        self.ttl_s = ttl_s
        self.lease_ms = lease_s * 1000
        self._begin: AsyncScript = scripts_for(redis)["idempotency_begin"]
        self._end: AsyncScript = scripts_for(redis)["idempotency_end"]

    async def begin(self, project_id: str, key_id: str, key_digest: str, fingerprint: str,
                    headers: str = "") -> Begin:
        """Reserve the record of ``key_digest`` (an ``Idempotency-Key``'s SHA-256) sent with the
        API key ``key_id`` of ``project_id`` for a request of ``fingerprint`` and ``headers``
        (:func:`models.idempotency.headers_digest`), or say why not."""
        record = self.keys.idempotency(project_id, key_id, key_digest)
        token = uuid.uuid4().hex
        out: list[Any] = await self._begin(keys=[record],
                                           args=[fingerprint, token, self.lease_ms, headers])
        code = BeginCode(int(out[0]))
        if code is BeginCode.RESERVED:
            return Begin(code, reservation=Reservation(record, token))
        if code is BeginCode.REPLAY:
            return Begin(code, answer=decode_answer((out[1], out[2])))
        return Begin(code)

    async def finish(self, reservation: Reservation, answer: StoredAnswer) -> None:
        """Keep ``answer`` for replays (the request took effect)."""
        status, body = encode_answer(answer)
        await self._call(reservation, ["store", status, body, self.ttl_s])

    async def release(self, reservation: Reservation) -> None:
        """Forget the reservation (the request had no effect; a retry runs again)."""
        await self._call(reservation, ["release"])

    async def renew(self, reservation: Reservation) -> None:
        """Extend the lease of a reservation whose request is still running."""
        await self._call(reservation, ["renew", self.lease_ms])

    @asynccontextmanager
    async def holding(self, reservation: Reservation) -> AsyncIterator[None]:
        """Renew the lease every third of it while the body runs: a live holder keeps its key,
        a dead one (process killed) frees it within one lease instead of a long fixed one."""

        async def renew_forever() -> None:
            while True:
                await asyncio.sleep(self.lease_ms / 3000)
                try:
                    await self.renew(reservation)
                except RatchetError as exc:  # a missed renewal only shortens the lease
                    log.warning("could not renew an idempotency lease: %s", type(exc).__name__)

        task = asyncio.create_task(renew_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _call(self, reservation: Reservation, args: list[Any]) -> None:
        out: list[Any] = await self._end(keys=[reservation.record],
                                         args=[reservation.token, *args])
        code = int(out[0])
        if code == ScriptCode.LEASE_LOST:
            # the request outlived its lease (RATCHET_IDEMPOTENCY_LEASE_S too short for it)
            log.warning("idempotency reservation expired before the request finished")
        elif code < 0:
            raise StoreError(f"idempotency_end failed with code {code}")


class EventIds(RedisStore):
    """Event id → fingerprint of its first accepted body (agent included), per project.

    One rule for every path that accepts events (single and batch ingest): an id belongs to the
    first event accepted under it in its project — the same scope verdicts are stored and looked
    up in — so another agent of the project cannot reuse it (its fingerprint differs)."""

    def __init__(self, redis: RedisClient, keys: Keys, *, window_s: int) -> None:
        self.keys = keys
        self.window_s = window_s
        self._claim: AsyncScript = scripts_for(redis)["event_ids_claim"]
        self._settled = Settled()

    async def claim(
        self, events: Sequence[IngestEvent], *, now: float | None = None
    ) -> list[bool]:
        """Per event: ``True`` if its id is new in its project or was first used with this very
        body by this very agent (an idempotent retry), ``False`` if the id is bound to another
        event. One script call per project (a batch is one project). A window of 0 turns the
        check off. ``now`` (Unix seconds; default the clock) picks the time buckets."""
        if not events:
            return []
        if self.window_s <= 0:
            return [True] * len(events)
        by_project: dict[str, list[int]] = {}
        for i, ev in enumerate(events):
            by_project.setdefault(ev.project_id, []).append(i)
        out = [False] * len(events)
        for project_id, positions in by_project.items():
            group = [(events[i].event_id, event_fingerprint(events[i])) for i in positions]
            keys, args = claim_call(self.keys, project_id, group, self.window_s,
                                    time.time() if now is None else now,
                                    legacy=self._settled.legacy(project_id))
            answers = claim_answers(await self._claim(keys=keys, args=args), len(group),
                                    self._settled, project_id)
            for i, ok in zip(positions, answers, strict=True):
                out[i] = ok != 0
        return out
