"""Webhooks of a project in Redis (one hash per project: ``keys.webhooks(project)``).

The signing secret (``whsec_`` + 32 random bytes) is returned once at creation and kept in
clear in Redis, because signing needs it (as with agent secrets; protect Redis accordingly).
Listing never shows it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from models.errors import ConflictError, ScriptCode, raise_for_code
from models.webhooks import WebhookSpec
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient, RedisStore
from ratchet.store.scripts import scripts_for

__all__ = ["SECRET_PREFIX", "Webhook", "WebhookStore"]

SECRET_PREFIX = "whsec_"


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    project_id: str
    url: str
    actions: tuple[str, ...]
    description: str
    secret: str
    created_at: float

    def public(self) -> dict[str, Any]:
        """What the API shows (never the secret)."""
        return {"id": self.id, "url": self.url, "actions": list(self.actions),
                "description": self.description, "created_at": self.created_at}

    def _stored(self) -> bytes:
        return orjson.dumps({"url": self.url, "actions": list(self.actions),
                             "description": self.description, "secret": self.secret,
                             "created_at": self.created_at})

    @classmethod
    def _load(cls, project_id: str, webhook_id: str, raw: bytes | str) -> Webhook:
        d = orjson.loads(raw)
        return cls(webhook_id, project_id, str(d["url"]), tuple(d["actions"]),
                   str(d.get("description", "")), str(d["secret"]), float(d["created_at"]))


class WebhookStore(RedisStore):
    def __init__(self, redis: RedisClient, keys: Keys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self._add = scripts_for(redis)["webhook_add"]

    async def create(self, project_id: str, spec: WebhookSpec, max_per_project: int) -> Webhook:
        hook = Webhook(f"wh_{uuid.uuid4().hex[:16]}", project_id, spec.url, spec.actions,
                       spec.description, SECRET_PREFIX + secrets.token_urlsafe(32), self.clock())
        result = await self._add(keys=[self.keys.webhooks(project_id)],
                                 args=[hook.id, hook._stored(), max_per_project])
        if int(result[0]) == ScriptCode.LIMIT_REACHED:
            raise ConflictError(f"project already has {max_per_project} webhooks; delete one "
                                "first")
        raise_for_code(int(result[0]), "webhook_add")
        return hook

    async def list(self, project_id: str) -> list[Webhook]:
        raw = await self.redis.hgetall(self.keys.webhooks(project_id))
        hooks = [Webhook._load(project_id, k.decode() if isinstance(k, bytes) else k, v)
                 for k, v in raw.items()]
        return sorted(hooks, key=lambda h: (h.created_at, h.id))

    async def get(self, project_id: str, webhook_id: str) -> Webhook | None:
        raw = await self.redis.hget(self.keys.webhooks(project_id), webhook_id)
        return None if raw is None else Webhook._load(project_id, webhook_id, raw)

    async def delete(self, project_id: str, webhook_id: str) -> bool:
        return bool(await self.redis.hdel(self.keys.webhooks(project_id), webhook_id))
