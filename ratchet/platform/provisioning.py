"""Projects, API keys and agent credentials in Redis (docs/design.md §5).

- An **API key** (``rk_`` + 32 random URL-safe bytes) is shown once; Redis keeps only its
  SHA-256 (``keys.api_key(sha)`` → project id), so a Redis dump does not reveal usable keys.
- An **agent secret** (``as_`` + 32 random bytes) is shown once too, but Redis must keep it in
  clear: verifying an HMAC needs the same secret on both sides. Whoever can read Redis can sign
  events as any agent — protect Redis accordingly (private network, ``requirepass``/ACLs, TLS,
  no public snapshots). See docs/api.md.
- A project's **event-id bindings** hash is created with it (:func:`start_event_ids`, also used
  by self-serve signup): a project of this release never had bindings of the layouts before
  (``ratchet.store.event_id_buckets``), so its claims never read them — from the first.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from models.audit import check_action_actor
from models.errors import ConflictError, NotFoundError, ValidationError
from ratchet.platform.grants import live_grant
from ratchet.store.audit import AuditLog
from ratchet.store.event_id_buckets import born_settled
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, reply_text

__all__ = [
    "AGENT_SECRET_PREFIX",
    "API_KEY_PREFIX",
    "ProjectInfo",
    "agent_secret",
    "agent_secrets",
    "create_agent",
    "create_project",
    "hash_api_key",
    "list_projects",
    "project_exists",
    "project_for_api_key",
    "start_event_ids",
]

API_KEY_PREFIX = "rk_"
AGENT_SECRET_PREFIX = "as_"
_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def hash_api_key(api_key: str) -> str:
    """Hex SHA-256 of an API key: the only form Redis stores."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


async def create_project(
    redis: RedisClient, keys: Keys, name: str, tier: str | None = None, *,
    audit: AuditLog | None = None, actor: str = "cli",
) -> tuple[str, str]:
    """Create a project and its first API key; returns ``(project_id, api_key)`` — show it once.

    ``tier`` is its rate-limit tier (``None``: the gateway's default tier applies). With
    ``audit``, a ``project.created`` entry is appended (``actor`` names who did it).
    """
    if audit is not None:
        check_action_actor("project.created", actor)
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("project name must be 1 to 200 characters", "name")
    project_id = f"prj_{uuid.uuid4().hex[:16]}"
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    sha = hash_api_key(api_key)
    # one slot per step (Redis Cluster): its event-id bindings hash, the project (its pointer to
    # the key), its listing, then the key's record — no claim can come before that last step;
    # the key is shown only after all four
    await start_event_ids(redis, keys, project_id)
    await redis.hset(keys.project(project_id), mapping={
        "name": name, "created_at": repr(time.time()), "api_key_sha256": sha,
        **({"tier": tier} if tier is not None else {}),
    })
    await redis.sadd(keys.projects(), project_id)
    await redis.set(keys.api_key(sha), project_id)
    if audit is not None:
        await audit.append(project_id, "project.created", actor, f"project:{project_id}",
                           {"name": name, "api_key_id": sha[:12], "tier": tier})
    return project_id, api_key


async def start_event_ids(redis: RedisClient, keys: Keys, project_id: str) -> None:
    """Create a new project's event-id bindings hash saying that no layout before this one
    bound in it (``event_id_buckets.born_settled``): its claims then skip their reads from the
    first instead of for a window and a margin (a day). Call it before the project's first API
    key is stored: a claim needs the key."""
    await redis.hset(*born_settled(keys, project_id))


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """What ``ratchet projects list`` shows of a project (never a key or a secret)."""

    project_id: str
    name: str
    #: Its rate-limit tier; None: the gateways' default tier applies.
    tier: str | None
    created_at: float
    agents: int


async def list_projects(redis: RedisClient, keys: Keys) -> list[ProjectInfo]:
    """Every project of the listing (``keys.projects``), oldest first. A listed id whose project
    hash is gone (deleted by hand) is left out. One round trip for the listing, one pipeline for
    the projects (on a Redis Cluster, redis-py splits it by slot)."""
    ids = sorted(reply_text(p) for p in await redis.smembers(keys.projects()))
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for pid in ids:
            pipe.hmget(keys.project(pid), ["name", "tier", "created_at"])
            pipe.scard(keys.agents(pid))
        got = await pipe.execute()
    out = []
    for i, pid in enumerate(ids):
        (name, tier, created), agents = got[2 * i], got[2 * i + 1]
        if name is None and created is None:
            continue
        out.append(ProjectInfo(pid, reply_text(name or ""), None if tier is None else reply_text(tier),
                               float(reply_text(created or 0)), int(agents)))
    return sorted(out, key=lambda p: (p.created_at, p.project_id))


async def project_exists(redis: RedisClient, keys: Keys, project_id: str) -> bool:
    return bool(await redis.exists(keys.project(project_id)))


async def create_agent(
    redis: RedisClient,
    keys: Keys,
    project_id: str,
    agent_id: str | None = None,
    *,
    audit: AuditLog | None = None,
    actor: str = "cli",
    max_agents: int = 0,
) -> tuple[str, str]:
    """Register an agent of a project; returns ``(agent_id, secret)`` — show the secret once.

    With ``audit``, an ``agent.created`` entry is appended (never the secret). ``max_agents``
    (``RATCHET_MAX_AGENTS_PER_PROJECT``; 0 = no cap): a project that already has that many
    agents gets a 409 and nothing is written. Checked before writing, so concurrent
    registrations can pass it together by at most their number (they are rate-limited).
    """
    if audit is not None:
        check_action_actor("agent.created", actor)
    if agent_id is None:
        agent_id = f"agt_{uuid.uuid4().hex[:16]}"
    if not _AGENT_ID.fullmatch(agent_id):
        raise ValidationError(
            "agent id must be 1 to 128 characters of letters, digits and . _ : @ -, "
            "starting with a letter or digit", "agent_id",
        )
    if not await project_exists(redis, keys, project_id):
        raise NotFoundError(f"project {project_id} does not exist; create it first")
    if max_agents > 0 and await redis.scard(keys.agents(project_id)) >= max_agents:
        raise ConflictError(
            f"project {project_id} already has {max_agents} agents, the most allowed "
            "(RATCHET_MAX_AGENTS_PER_PROJECT)", "agent_id")
    secret = AGENT_SECRET_PREFIX + secrets.token_urlsafe(32)
    created = await redis.hsetnx(keys.agent(project_id, agent_id), "secret", secret)
    if not created:
        raise ConflictError(f"agent {agent_id} already exists in project {project_id}")
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(keys.agent(project_id, agent_id), "created_at", repr(time.time()))
        pipe.sadd(keys.agents(project_id), agent_id)
        await pipe.execute()
    if audit is not None:
        await audit.append(project_id, "agent.created", actor, f"agent:{agent_id}", {})
    return agent_id, secret


async def project_for_api_key(redis: RedisClient, keys: Keys, api_key: str) -> str | None:
    """The project a live API key belongs to (any role: models/scopes.py), or ``None``."""
    grant = await live_grant(redis, keys, hash_api_key(api_key))
    return None if grant is None else grant.project_id


async def agent_secret(redis: RedisClient, keys: Keys, project_id: str, agent_id: str) -> str | None:
    """The signing secret of a registered agent, or ``None`` if the project has no such agent."""
    found = await agent_secrets(redis, keys, project_id, [agent_id])
    return found.get(agent_id)


async def agent_secrets(
    redis: RedisClient, keys: Keys, project_id: str, agent_ids: list[str]
) -> dict[str, str]:
    """Secrets of several agents in one round trip; unknown agents are absent from the result."""
    unique = list(dict.fromkeys(agent_ids))
    if not unique:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for agent_id in unique:
            pipe.hget(keys.agent(project_id, agent_id), "secret")
        raws = await pipe.execute()
    out: dict[str, str] = {}
    for agent_id, raw in zip(unique, raws):
        if raw is not None:
            out[agent_id] = raw.decode() if isinstance(raw, bytes) else str(raw)
    return out
