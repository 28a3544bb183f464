"""Credential rotation and a project's rate-limit tier (DESIGN.md §5).

Rotation is one Lua call each: the old API key (or agent secret) stops working in the same atomic
step in which the new one starts. New credentials are returned once and never logged.
"""

from __future__ import annotations

import secrets
import time
from typing import cast

from redis.asyncio import Redis

from models.audit import check_action_actor
from models.errors import ConflictError, NotFoundError, ScriptCode, ValidationError, raise_for_code
from ratchet.platform.provisioning import (
    AGENT_SECRET_PREFIX,
    API_KEY_PREFIX,
    hash_api_key,
    project_exists,
)
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.scripts import ScriptRegistry

__all__ = [
    "agent_info",
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
    redis: Redis, keys: Keys, scripts: ScriptRegistry, project_id: str, current_key: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> str:
    """Replace ``current_key`` (which must belong to ``project_id``); returns the new key.

    With ``audit``, a ``key.rotated`` entry names the old and new key ids (never a key).
    """
    return await _rotate(redis, keys, scripts, project_id, hash_api_key(current_key), audit,
                         actor)


async def rotate_api_key_of_project(
    redis: Redis, keys: Keys, scripts: ScriptRegistry, project_id: str, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> str:
    """Operator rotation (CLI): replace whatever key the project has now; returns the new key."""
    sha = await redis.hget(keys.project(project_id), "api_key_sha256")
    if sha is None:
        raise NotFoundError(f"project {project_id} does not exist")
    return await _rotate(redis, keys, scripts, project_id, _text(sha), audit, actor)


async def _rotate(
    redis: Redis, keys: Keys, scripts: ScriptRegistry, project_id: str, old_sha: str,
    audit: AuditLog | None, actor: str,
) -> str:
    if audit is not None:
        check_action_actor("key.rotated", actor)
    new_key = new_api_key()
    new_sha = hash_api_key(new_key)
    code = int(await scripts["rotate_key"](
        keys=[keys.api_key(old_sha), keys.api_key(new_sha), keys.project(project_id)],
        args=[project_id, new_sha, repr(time.time())],
    ))
    if code == ScriptCode.KEY_MISMATCH:
        raise ConflictError("this API key was rotated already; use the newest key")
    raise_for_code(code, "rotate_key")
    if audit is not None:
        await audit.append(project_id, "key.rotated", actor, f"apikey:{new_sha[:12]}",
                           {"revoked": old_sha[:12]})
    return new_key


async def rotate_agent_secret(
    redis: Redis, keys: Keys, scripts: ScriptRegistry, project_id: str, agent_id: str, *,
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
        raise NotFoundError(f"no agent {agent_id!r} in this project")
    raise_for_code(code, "rotate_secret")
    if audit is not None:
        await audit.append(project_id, "secret.rotated", actor, f"agent:{agent_id}", {})
    return secret


async def agent_info(redis: Redis, keys: Keys, project_id: str, agent_id: str) -> dict[str, str]:
    """Public fields of an agent (never its secret); 404 if the project has no such agent."""
    raw = cast(dict[bytes, bytes], await redis.hgetall(keys.agent(project_id, agent_id)))
    if not raw:
        raise NotFoundError(f"no agent {agent_id!r} in this project")
    out = {"agent_id": agent_id}
    for name in ("created_at", "secret_rotated_at"):
        value = raw.get(name.encode())
        if value is not None:
            out[name] = _text(value)
    return out


async def project_tier(redis: Redis, keys: Keys, project_id: str) -> str | None:
    """The tier stored with the project, or ``None`` (then the default tier applies)."""
    raw = await redis.hget(keys.project(project_id), "tier")
    return None if raw is None else _text(raw)


async def set_project_tier(
    redis: Redis, keys: Keys, project_id: str, tier: str, known: frozenset[str]
) -> None:
    if tier not in known:
        raise ValidationError(f"unknown tier {tier!r}; configured: {', '.join(sorted(known))}",
                              "tier")
    if not await project_exists(redis, keys, project_id):
        raise NotFoundError(f"project {project_id} does not exist")
    await redis.hset(keys.project(project_id), "tier", tier)
    # audit: tier.changed (project_id, tier) — models.audit.ACTIONS has no such action yet


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
