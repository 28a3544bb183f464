"""Per-project engine overrides in Redis, and the cached per-project parameters workers use.

An override is one hash (:meth:`ratchet.store.keys.Keys.engine_override`): the validated normal
form as JSON (:func:`models.overrides.parse_override`), a version (+1 on every change, kept on
delete so a worker sees the change), when and by whom. Writes are one MULTI/EXEC.

Workers resolve parameters per project through :class:`ProjectParams`: a per-process cache that,
once an entry is older than ``refresh_s``, asks Redis for the version only (one ``HGET`` per
project and refresh, never per event) and re-reads the override when it moved — so a stored
override applies to batches decided at most ``refresh_s`` (+ one batch) later, without a
restart. Projects without an override get the worker's global parameters object itself.

``sigma_multiplier`` and ``fallback_bits`` are also kept per chain (approvals and rejections
move them, ``lua/feedback.lua``); :func:`save_override` and :func:`delete_override` therefore set
(or clear, back to the global value) those two on the project's existing chains, found as
``ratchet baselines`` finds them. A force-locked chain keeps at least ``forced_sigma``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from models.errors import ConfigError
from models.overrides import THRESHOLD_KEYS, apply_override
from models.params import EngineParams
from ratchet.store.baselines import BaselineReader
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore

__all__ = ["ProjectParams", "StoredOverride", "delete_override", "load_override",
           "save_override"]

log = logging.getLogger("ratchet.engine.overrides")


@dataclass(frozen=True, slots=True)
class StoredOverride:
    """A project's override as stored (``version`` 0 and empty: none was ever stored)."""

    project_id: str
    values: dict[str, Any]
    version: int
    updated_at: float | None = None
    updated_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"project_id": self.project_id, "engine": self.values, "version": self.version,
                "source": "override" if self.values else "global",
                "updated_at": self.updated_at, "updated_by": self.updated_by}


def _s(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


async def load_override(client: RedisClient, keys: Keys, project_id: str) -> StoredOverride:
    raw = await client.hmget(keys.engine_override(project_id),
                             ["json", "version", "updated_at", "updated_by"])
    doc, version, at, by = (_s(v) for v in raw)
    values = orjson.loads(doc) if doc else {}
    return StoredOverride(project_id, values, int(version or 0),
                          float(at) if at else None, by)


async def _write(client: RedisClient, keys: Keys, project_id: str, values: Mapping[str, Any],
                 actor: str, now: float) -> int:
    key = keys.engine_override(project_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"json": orjson.dumps(dict(values)).decode(),
                            "updated_at": repr(now), "updated_by": actor})
    pipe.hincrby(key, "version", 1)
    _, version = await pipe.execute()
    return int(version)


async def save_override(client: RedisClient, keys: Keys, project_id: str,
                        values: Mapping[str, Any], *, actor: str, now: float) -> StoredOverride:
    """Store ``values`` (already validated: :func:`models.overrides.parse_override`) as the
    project's override, replacing the previous one, and set its thresholds on existing chains."""
    version = await _write(client, keys, project_id, values, actor, now)
    await _sync_chains(client, keys, project_id, values)
    return StoredOverride(project_id, dict(values), version, now, actor)


async def delete_override(client: RedisClient, keys: Keys, project_id: str, *, actor: str,
                          now: float) -> StoredOverride:
    """Remove the override (the global parameters apply again); the version still moves."""
    version = await _write(client, keys, project_id, {}, actor, now)
    await _sync_chains(client, keys, project_id, {})
    return StoredOverride(project_id, {}, version, now, actor)


#: Chains whose thresholds one pipelined round trip reads (and one writes).
_SYNC_CHUNK = 500


async def _sync_chains(client: RedisClient, keys: Keys, project_id: str,
                       values: Mapping[str, Any]) -> None:
    """Set (or clear) each existing chain's own sigma and fallback (see the module doc)."""
    chains = await BaselineReader(client, keys).chains(project_id)
    forced_sigma = float(values.get("forced_sigma", EngineParams().forced_sigma))
    # pipelined, _SYNC_CHUNK chains a round trip: a project at the chain cap (10,000) took
    # 1.1-2.0 s of sequential round trips per write (attack run 7, F8)
    metas = [keys.chain_keys(chain.tag).meta for chain in chains]
    for at in range(0, len(metas), _SYNC_CHUNK):
        part = metas[at:at + _SYNC_CHUNK]
        reads = client.pipeline(transaction=False)
        for meta in part:
            reads.hmget(meta, ["runs", "forced"])
        states = await reads.execute()
        writes = client.pipeline(transaction=False)
        pending = 0
        for meta, state in zip(part, states, strict=True):
            if state[0] is None:
                continue  # expired or reset: it starts from the parameters in force
            forced = _s(state[1]) == "1"
            for key, field in zip(THRESHOLD_KEYS, ("sig", "fb"), strict=True):
                if key in values:
                    value = float(values[key])
                    if field == "sig" and forced:
                        value = max(value, forced_sigma)
                    writes.hset(meta, field, repr(value))
                    pending += 1
                elif not (field == "sig" and forced):
                    writes.hdel(meta, field)
                    pending += 1
        if pending:
            await writes.execute()


@dataclass
class _Entry:
    params: EngineParams
    version: int
    checked: float


class ProjectParams(RedisStore):
    """Engine parameters per project: ``base`` with the project's stored override, cached."""

    def __init__(self, client: RedisClient, keys: Keys, base: EngineParams, *,
                 refresh_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.keys = keys
        self.base = base
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, _Entry] = {}

    async def params(self, project_ids: Collection[str]) -> Mapping[str, EngineParams]:
        """Parameters of each project (``base`` itself where there is no override)."""
        now = self.clock()
        stale = [p for p in project_ids
                 if (e := self._cache.get(p)) is None or now - e.checked >= self.refresh_s]
        if stale:
            await asyncio.gather(*(self._refresh(p, now) for p in stale))
        return {p: self._cache[p].params for p in project_ids}

    async def _refresh(self, project_id: str, now: float) -> None:
        entry = self._cache.get(project_id)
        raw = await self.client.hget(self.keys.engine_override(project_id), "version")
        version = int(raw) if raw is not None else 0
        if entry is not None and entry.version == version:
            entry.checked = now
            return
        params = self.base
        if version:
            stored = await load_override(self.client, self.keys, project_id)
            try:
                params = apply_override(self.base, stored.values) if stored.values else self.base
            except ConfigError as exc:
                # validated when written; one that no longer fits (another release's keys, or
                # this worker's global parameters) must not stop the project's traffic
                log.error("project %s: engine override version %d does not apply (%s); "
                          "keeping %s", project_id, version, exc,
                          "the previous parameters" if entry else "the global parameters")
                params = entry.params if entry is not None else self.base
            else:
                log.info("project %s: engine override version %d in force (%s)", project_id,
                         version, ", ".join(f"{k}={v}" for k, v in sorted(stored.values.items()))
                         or "none: global parameters")
        self._cache[project_id] = _Entry(params, version, now)
