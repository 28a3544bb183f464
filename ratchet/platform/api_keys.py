"""Role-scoped API keys of a project: create, list, rotate, revoke (models/scopes.py).

A project has its own key (made with the project: admin) and any number of scoped keys, each
an ``admin`` key or an ``ingest`` key (bound to one agent, or to the whole project). Like the
project key, a scoped key is shown once and only its SHA-256 is stored: ``keys.api_key(sha)``
holds its grant (what the gateway reads on every request) and ``keys.project_keys(project)``
lists the project's scoped keys by id (what ``GET /v1/keys`` and ``ratchet keys list`` show).
Every change is audited (``key.created``, ``key.rotated``, ``key.revoked``; never a key).

The record and the index live on different Redis Cluster slots, and a key is live only while
both name it (:mod:`ratchet.platform.grants`), so every change is a sequence of single-slot steps
in which the index is the switch: creation lists the key first and writes its record second;
rotation writes the new record, swaps the index entry (``rotate_scoped_key.lua``), then deletes
the old record; revocation unlists first and deletes the record second. Interrupted anywhere, no
key is half-valid: an unlisted record is refused (and deleted) by the next lookup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import orjson

from models.audit import check_action_actor
from models.errors import (
    ConflictError,
    NotFoundError,
    ScriptCode,
    ValidationError,
    raise_for_code,
)
from models.sanitize import shown
from models.scopes import ADMIN, INGEST, ROLES, Grant, grant_value
from ratchet.platform.credentials import new_api_key, rotate_api_key_of_project
from ratchet.platform.grants import live_grant
from ratchet.platform.provisioning import hash_api_key, project_exists
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, reply_text
from ratchet.store.scripts import ScriptRegistry

__all__ = [
    "KeyInfo",
    "create_key",
    "grant_for_api_key",
    "list_keys",
    "revoke_key",
    "rotate_key",
]

#: Scoped keys per project (a listing stays one small hash).
MAX_KEYS_PER_PROJECT = 1000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never the key, never its full hash."""

    key_id: str
    role: str
    agent_id: str | None
    created_at: float
    primary: bool = False

    def public(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "role": self.role, "agent_id": self.agent_id,
                "created_at": self.created_at, "primary": self.primary}


def _describe(grant: Grant, sha: str, now: float) -> bytes:
    return orjson.dumps({"role": grant.role, "agent_id": grant.agent_id, "created_at": now,
                         "sha256": sha})


async def grant_for_api_key(redis: RedisClient, keys: Keys, api_key: str) -> Grant | None:
    """The grant of an API key, or ``None`` if it is not a live key."""
    return await live_grant(redis, keys, hash_api_key(api_key))


def _check_role(role: Any, agent_id: Any) -> tuple[str, str | None]:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {list(ROLES)}", "role")
    if agent_id is not None and (not isinstance(agent_id, str) or not agent_id):
        raise ValidationError("agent_id must be a registered agent id", "agent_id")
    if agent_id is not None and role != INGEST:
        raise ValidationError("only ingest keys are bound to an agent", "agent_id")
    return str(role), agent_id


async def create_key(
    redis: RedisClient, keys: Keys, project_id: str, role: Any, agent_id: Any = None, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> tuple[KeyInfo, str]:
    """A new scoped key of ``project_id``; returns its description and the key (show it once).

    ``agent_id`` binds an ingest key to one registered agent (404 if the project has none)."""
    role, agent_id = _check_role(role, agent_id)
    if audit is not None:
        check_action_actor("key.created", actor)
    if not await project_exists(redis, keys, project_id):
        raise NotFoundError(f"project {project_id} does not exist")
    if agent_id is not None and not await redis.exists(keys.agent(project_id, agent_id)):
        raise NotFoundError(f"no agent {shown(agent_id)} in this project; register it first")
    if await redis.hlen(keys.project_keys(project_id)) >= MAX_KEYS_PER_PROJECT:
        raise ConflictError(f"a project has at most {MAX_KEYS_PER_PROJECT} keys; revoke one")
    grant = Grant(project_id, role, agent_id)
    api_key = new_api_key()
    sha = hash_api_key(api_key)
    now = time.time()
    # listed first, live second: a key is never usable without being listed (and revocable)
    await redis.hset(keys.project_keys(project_id), sha[:12], _describe(grant, sha, now))
    if not await redis.set(keys.api_key(sha), grant_value(grant), nx=True):
        raise_for_code(ScriptCode.ALREADY_EXISTS, "create_key")
    info = KeyInfo(sha[:12], role, agent_id, now)
    if audit is not None:
        await audit.append(project_id, "key.created", actor, f"apikey:{sha[:12]}",
                           {"role": role, "agent_id": agent_id})
    return info, api_key


async def list_keys(redis: RedisClient, keys: Keys, project_id: str) -> list[KeyInfo]:
    """The project's own key (``primary``) and its scoped keys, oldest first."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.project(project_id), ["api_key_sha256", "created_at", "key_rotated_at"])
        pipe.hgetall(keys.project_keys(project_id))
        (sha, created, rotated), scoped = await pipe.execute()
    out: list[KeyInfo] = []
    if sha is not None:
        at = float(reply_text(rotated or created or 0))
        out.append(KeyInfo(reply_text(sha)[:12], ADMIN, None, at, primary=True))
    for key_id, raw in cast(dict[bytes, bytes], scoped).items():
        d = orjson.loads(raw)
        out.append(KeyInfo(reply_text(key_id), d["role"], d.get("agent_id"), d["created_at"]))
    return sorted(out, key=lambda k: (not k.primary, k.created_at))


async def _scoped(redis: RedisClient, keys: Keys, project_id: str, key_id: str) -> dict[str, Any]:
    raw = await redis.hget(keys.project_keys(project_id), key_id)
    if raw is None:
        raise NotFoundError(f"no key {shown(key_id)} in this project")
    return cast(dict[str, Any], orjson.loads(raw))


async def _is_primary(redis: RedisClient, keys: Keys, project_id: str, key_id: str) -> bool:
    sha = await redis.hget(keys.project(project_id), "api_key_sha256")
    return sha is not None and reply_text(sha)[:12] == key_id


async def rotate_key(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, project_id: str, key_id: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> tuple[KeyInfo, str]:
    """Replace key ``key_id`` by a new key with the same grant, atomically; returns the new
    key's description and the key. The project's own key is rotated like ``keys:rotate``."""
    if audit is not None:
        check_action_actor("key.rotated", actor)
    if await _is_primary(redis, keys, project_id, key_id):
        new = await rotate_api_key_of_project(redis, keys, scripts, project_id, audit=audit,
                                              actor=actor)
        return KeyInfo(hash_api_key(new)[:12], ADMIN, None, time.time(), primary=True), new
    d = await _scoped(redis, keys, project_id, key_id)
    grant = Grant(project_id, d["role"], d.get("agent_id"))
    new = new_api_key()
    new_sha = hash_api_key(new)
    now = time.time()
    if not await redis.set(keys.api_key(new_sha), grant_value(grant), nx=True):  # 1. record
        raise_for_code(ScriptCode.ALREADY_EXISTS, "rotate_scoped_key")
    code = int(await scripts["rotate_scoped_key"](  # 2. the switch
        keys=[keys.project_keys(project_id)],
        args=[key_id, d["sha256"], new_sha[:12], _describe(grant, new_sha, now)],
    ))
    if code != ScriptCode.OK:
        await redis.delete(keys.api_key(new_sha))
    if code == ScriptCode.KEY_MISMATCH:
        raise ConflictError("this key was rotated or revoked already; list the keys again")
    raise_for_code(code, "rotate_scoped_key")
    await redis.delete(keys.api_key(d["sha256"]))  # 3. the old record (dead since step 2)
    if audit is not None:
        await audit.append(project_id, "key.rotated", actor, f"apikey:{new_sha[:12]}",
                           {"revoked": key_id, "role": grant.role, "agent_id": grant.agent_id})
    return KeyInfo(new_sha[:12], grant.role, grant.agent_id, now), new


async def revoke_key(
    redis: RedisClient, keys: Keys, project_id: str, key_id: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> None:
    """Revoke scoped key ``key_id`` at once (the project's own key can only be rotated)."""
    if audit is not None:
        check_action_actor("key.revoked", actor)
    if await _is_primary(redis, keys, project_id, key_id):
        raise ConflictError("the project's own key cannot be revoked, only rotated "
                            "(`ratchet keys rotate --key-id …` or `ratchet projects rotate-key`; "
                            "over the API POST /v1/keys/{key_id}:rotate)")
    d = await _scoped(redis, keys, project_id, key_id)
    await redis.hdel(keys.project_keys(project_id), key_id)  # dead (unlisted) first
    await redis.delete(keys.api_key(d["sha256"]))  # record second
    if audit is not None:
        await audit.append(project_id, "key.revoked", actor, f"apikey:{key_id}",
                           {"role": d["role"], "agent_id": d.get("agent_id")})
