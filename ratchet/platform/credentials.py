"""Credential rotation and a project's rate-limit tier (docs/design.md §5).

An agent secret is rotated by one Lua call on the agent's hash. An API key is rotated in three
single-slot steps (its record and its project live on different Redis Cluster slots), each safe to
repeat or to be interrupted after: (1) the new key's record is written (``SET NX``; unused until
the project points at it), (2) the project's pointer is switched from the old key's hash to the
new one's only if it still names the old one (``rotate_key.lua``) — the one moment the old key
stops and the new one starts working, since a key is live only while its project points at it
(:mod:`ratchet.platform.grants`), (3) the old record is deleted. A rotation that loses step 2 to
a concurrent one deletes its own new record. New credentials are returned once and never logged.
"""

from __future__ import annotations

import secrets
import time
from typing import cast

from models.audit import check_action_actor
from models.errors import ConflictError, NotFoundError, ScriptCode, ValidationError, raise_for_code
from models.sanitize import shown
from ratchet.platform.provisioning import (
    AGENT_SECRET_PREFIX,
    API_KEY_PREFIX,
    hash_api_key,
    project_exists,
)
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, reply_text
from ratchet.store.scripts import ScriptRegistry

__all__ = [
    "agent_info",
    "list_agents",
    "new_agent_secret",
    "new_api_key",
    "project_tier",
    "rotate_agent_secret",
    "rotate_api_key",
    "rotate_api_key_of_project",
    "set_project_tier",
]


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_agent_secret() -> str:
    return AGENT_SECRET_PREFIX + secrets.token_urlsafe(32)


async def rotate_api_key(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, project_id: str, current_key: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> str:
    """Replace ``current_key`` (which must belong to ``project_id``); returns the new key.

    With ``audit``, a ``key.rotated`` entry names the old and new key ids (never a key).
    """
    return await _rotate(redis, keys, scripts, project_id, hash_api_key(current_key), audit,
                         actor)


async def rotate_api_key_of_project(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, project_id: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> str:
    """Operator rotation (CLI): replace whatever key the project has now; returns the new key."""
    sha = await redis.hget(keys.project(project_id), "api_key_sha256")
    if sha is None:
        raise NotFoundError(f"project {project_id} does not exist")
    return await _rotate(redis, keys, scripts, project_id, reply_text(sha), audit, actor)


async def _rotate(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, project_id: str, old_sha: str,
    audit: AuditLog | None, actor: str,
) -> str:
    if audit is not None:
        check_action_actor("key.rotated", actor)
    new_key = new_api_key()
    new_sha = hash_api_key(new_key)
    if not await redis.set(keys.api_key(new_sha), project_id, nx=True):  # 1. new record
        raise_for_code(ScriptCode.ALREADY_EXISTS, "rotate_key")
    code = int(await scripts["rotate_key"](  # 2. the switch
        keys=[keys.project(project_id)], args=[old_sha, new_sha, repr(time.time())],
    ))
    if code != ScriptCode.OK:
        await redis.delete(keys.api_key(new_sha))
    if code == ScriptCode.KEY_MISMATCH:
        raise ConflictError("this API key was rotated already; use the newest key")
    raise_for_code(code, "rotate_key")
    await redis.delete(keys.api_key(old_sha))  # 3. the old record (dead since step 2)
    if audit is not None:
        await audit.append(project_id, "key.rotated", actor, f"apikey:{new_sha[:12]}",
                           {"revoked": old_sha[:12]})
    return new_key


async def rotate_agent_secret(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, project_id: str, agent_id: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> str:
    """Replace an agent's signing secret; 404 if the project has no such agent.

    With ``audit``, a ``secret.rotated`` entry is appended (never the secret).
    """
    if audit is not None:
        check_action_actor("secret.rotated", actor)
    secret = new_agent_secret()
    code = int(await scripts["rotate_secret"](
        keys=[keys.agent(project_id, agent_id)], args=[secret, repr(time.time())],
    ))
    if code == ScriptCode.UNKNOWN_AGENT:
        raise NotFoundError(f"no agent {shown(agent_id)} in this project")
    raise_for_code(code, "rotate_secret")
    if audit is not None:
        await audit.append(project_id, "secret.rotated", actor, f"agent:{agent_id}", {})
    return secret


async def agent_info(redis: RedisClient, keys: Keys, project_id: str, agent_id: str) -> dict[str, str]:
    """Public fields of an agent (never its secret); 404 if the project has no such agent."""
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.agent(project_id, agent_id)))
    if not raw:
        raise NotFoundError(f"no agent {shown(agent_id)} in this project")
    out = {"agent_id": agent_id}
    for name in _AGENT_FIELDS:
        value = raw.get(name.encode())
        if value is not None:
            out[name] = reply_text(value)
    return out


_AGENT_FIELDS = ("created_at", "secret_rotated_at")


async def list_agents(redis: RedisClient, keys: Keys, project_id: str) -> list[dict[str, str]]:
    """Public fields of every agent of the project (never a secret), oldest first: the
    project's agent set, then one pipeline of the agents' records. An id whose record is gone
    is left out."""
    ids = sorted(reply_text(a) for a in await redis.smembers(keys.agents(project_id)))
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for agent_id in ids:
            pipe.hmget(keys.agent(project_id, agent_id), ["secret", *_AGENT_FIELDS])
        got = await pipe.execute()
    out = []
    for agent_id, (secret, *values) in zip(ids, got, strict=True):
        if secret is None:
            continue
        out.append({"agent_id": agent_id, **{name: reply_text(v) for name, v in
                                             zip(_AGENT_FIELDS, values, strict=True)
                                             if v is not None}})
    return sorted(out, key=lambda a: (float(a.get("created_at", 0)), a["agent_id"]))


async def project_tier(redis: RedisClient, keys: Keys, project_id: str) -> str | None:
    """The tier stored with the project, or ``None`` (then the default tier applies)."""
    raw = await redis.hget(keys.project(project_id), "tier")
    return None if raw is None else reply_text(raw)


async def set_project_tier(
    redis: RedisClient, keys: Keys, project_id: str, tier: str, known: frozenset[str]
) -> None:
    if tier not in known:
        raise ValidationError(f"unknown tier {shown(tier)}; configured: {', '.join(sorted(known))}",
                              "tier")
    if not await project_exists(redis, keys, project_id):
        raise NotFoundError(f"project {project_id} does not exist")
    await redis.hset(keys.project(project_id), "tier", tier)
    # audit: tier.changed (project_id, tier) — models.audit.ACTIONS has no such action yet
