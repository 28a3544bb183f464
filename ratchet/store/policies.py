"""Per-project guardrail policies in Redis, and the sources the engine reads them from.

A stored policy is one hash (:meth:`ratchet.store.keys.Keys.policy`): the TOML text as written, its
validated normal form as JSON (:func:`models.guardrails.policy_to_dict`), the SHA-256 of that
form, a version number (+1 on every replacement), when and by whom. :func:`save_policy`
validates before writing and writes everything in one MULTI/EXEC, so an invalid policy never
replaces a valid one and a reader never sees half of a replacement.

Workers read policies through :class:`StoredPolicies`: a per-process cache that, once an entry
is older than ``refresh_s``, asks Redis for the version only (one ``HGET``) and re-reads and
re-validates the policy when the version moved. A replaced policy therefore applies to batches
decided at most ``refresh_s`` (+ one batch) after the ``PUT``. :class:`FixedPolicy` applies one
policy to every project (``ratchet replay --policy FILE``, tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from models.errors import ValidationError
from models.guardrails import (
    Policy,
    StateSpec,
    default_policy,
    parse_policy_toml,
    policy_from_dict,
    policy_hash,
    policy_to_dict,
    state_spec,
)
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisStore
from ratchet.telemetry.metrics import POLICY_LOADS

__all__ = [
    "DEFAULT_TOML",
    "ActivePolicy",
    "FixedPolicy",
    "PolicySource",
    "StoredPolicies",
    "StoredPolicy",
    "load_policy",
    "save_policy",
    "store_policy",
]

log = logging.getLogger("ratchet.policy")

#: What ``GET /v1/policy`` shows for a project that never stored one (parses to the defaults).
DEFAULT_TOML = (
    "# No policy stored for this project: every guardrail runs with its defaults\n"
    "# (docs/guardrails.md, docs/policy.example.toml). PUT a TOML policy to change them.\n"
    "version = 1\n"
)


@dataclass(frozen=True, slots=True)
class ActivePolicy:
    """A validated policy and the Redis state it needs (computed once per load)."""

    policy: Policy
    spec: StateSpec
    version: int = 0

    @classmethod
    def of(cls, policy: Policy, version: int = 0) -> ActivePolicy:
        return cls(policy, state_spec(policy), version)


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A project's policy as stored (``version`` 0: none stored, the defaults apply)."""

    project_id: str
    toml: str
    policy: Policy
    version: int
    hash: str
    updated_at: float | None = None
    updated_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "version": self.version,
            "hash": self.hash,
            "source": "stored" if self.version else "default",
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "toml": self.toml,
            "policy": policy_to_dict(self.policy),
        }


def _s(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


async def load_policy(client: Redis | RedisCluster, keys: Keys, project_id: str) -> StoredPolicy:
    """The stored policy of ``project_id`` (the defaults with version 0 when none is stored)."""
    raw = await client.hmget(
        keys.policy(project_id), ["toml", "json", "version", "hash", "updated_at", "updated_by"]
    )
    toml, doc, version, digest, updated_at, updated_by = (_s(v) for v in raw)
    if doc is None or version is None:
        policy = default_policy()
        return StoredPolicy(project_id, DEFAULT_TOML, policy, 0, policy_hash(policy))
    return StoredPolicy(
        project_id,
        toml or "",
        policy_from_dict(orjson.loads(doc)),
        int(version),
        digest or "",
        float(updated_at) if updated_at else None,
        updated_by,
    )


async def save_policy(
    client: Redis | RedisCluster,
    keys: Keys,
    project_id: str,
    text: str,
    *,
    actor: str,
    now: float,
) -> StoredPolicy:
    """Validate ``text`` and replace the project's policy; raises
    :class:`~models.errors.ValidationError` (nothing written) when it is invalid."""
    return await store_policy(client, keys, project_id, text, parse_policy_toml(text),
                              actor=actor, now=now)


async def store_policy(
    client: Redis | RedisCluster,
    keys: Keys,
    project_id: str,
    text: str,
    policy: Policy,
    *,
    actor: str,
    now: float,
) -> StoredPolicy:
    """Replace the project's policy with ``policy``, already parsed from ``text``
    (:func:`models.guardrails.policy.parse_policy_toml`; the gateway parses it apart to charge
    the work)."""
    doc = orjson.dumps(policy_to_dict(policy)).decode()
    digest = policy_hash(policy)
    key = keys.policy(project_id)
    pipe = client.pipeline(transaction=True)
    pipe.hset(key, mapping={"toml": text, "json": doc, "hash": digest,
                            "updated_at": repr(now), "updated_by": actor})
    pipe.hincrby(key, "version", 1)
    _, version = await pipe.execute()
    return StoredPolicy(project_id, text, policy, int(version), digest, now, actor)


class PolicySource(Protocol):
    """Where the engine gets each project's policy from."""

    async def active(self, project_ids: Collection[str]) -> Mapping[str, ActivePolicy]: ...


@dataclass
class FixedPolicy:
    """One policy for every project (replay ``--policy``, tests, benchmarks)."""

    policy: Policy = field(default_factory=default_policy)
    _active: ActivePolicy | None = None

    async def active(self, project_ids: Collection[str]) -> Mapping[str, ActivePolicy]:
        if self._active is None:
            self._active = ActivePolicy.of(self.policy)
        return {p: self._active for p in project_ids}


@dataclass
class _Entry:
    active: ActivePolicy
    checked: float


class StoredPolicies(RedisStore):
    """Stored policies with a per-process cache re-validated every ``refresh_s`` seconds."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        keys: Keys,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.keys = keys
        self.refresh_s = refresh_s
        self.clock = clock
        self._cache: dict[str, _Entry] = {}
        self._default = ActivePolicy.of(default_policy())

    async def active(self, project_ids: Collection[str]) -> Mapping[str, ActivePolicy]:
        now = self.clock()
        stale = [
            p for p in project_ids
            if (e := self._cache.get(p)) is None or now - e.checked >= self.refresh_s
        ]
        if stale:
            await asyncio.gather(*(self._refresh(p, now) for p in stale))
        return {p: self._cache[p].active for p in project_ids}

    async def _refresh(self, project_id: str, now: float) -> None:
        entry = self._cache.get(project_id)
        raw = await self.client.hget(self.keys.policy(project_id), "version")
        version = int(raw) if raw is not None else 0
        if entry is not None and entry.active.version == version:
            entry.checked = now
            return
        if version == 0:
            active = self._default
        else:
            try:
                stored = await load_policy(self.client, self.keys, project_id)
            except (ValidationError, ValueError) as exc:
                # Stored policies were validated when written; one that no longer validates
                # (e.g. written by another version) must not stop the project's traffic.
                POLICY_LOADS.labels(result="invalid").inc()
                log.error("project %s: stored guardrail policy version %d is invalid (%s); "
                          "keeping the policy in force", project_id, version, exc)
                kept = entry.active if entry is not None else self._default
                active = ActivePolicy(kept.policy, kept.spec, version)
            else:
                active = ActivePolicy.of(stored.policy, stored.version)
                POLICY_LOADS.labels(result="ok").inc()
                log.info("project %s: guardrail policy version %d in force", project_id,
                         stored.version)
        self._cache[project_id] = _Entry(active, now)
