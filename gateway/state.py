"""What one gateway process holds: settings, clients, and the requests waiting for verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.publisher import Publisher
from gateway.waiters import Waiters
from ratchet.config.settings import Settings
from ratchet.store.admission import AdmissionStore
from ratchet.store.audit import AuditLog
from ratchet.store.idempotency import EventIds, IdempotencyStore
from ratchet.store.keys import Keys
from ratchet.store.ratelimit import RateLimiter
from ratchet.store.redis import RedisClient
from ratchet.store.scripts import ScriptRegistry
from ratchet.store.verdicts import VerdictStore

if TYPE_CHECKING:
    from gateway.client_ip import Network
    from gateway.credential_cache import CredentialCache
    from gateway.tiers import TierCache

__all__ = ["STATE", "GatewayState"]


@dataclass
class GatewayState:
    settings: Settings
    keys: Keys
    redis: RedisClient
    store: VerdictStore
    publisher: Publisher
    waiters: Waiters
    #: Control-plane scripts (signup, rotation) on ``redis``.
    scripts: ScriptRegistry
    #: Token buckets (on ``ratelimit_redis_url``, default ``redis``).
    limiter: RateLimiter
    tiers: TierCache
    trusted_proxies: tuple[Network, ...]
    audit: AuditLog
    idempotency: IdempotencyStore
    event_ids: EventIds
    #: The one-round-trip admission of ingest requests (gateway/admission.py).
    admission: AdmissionStore
    credentials: CredentialCache


STATE: web.AppKey[GatewayState] = web.AppKey("ratchet_gateway_state", GatewayState)


def state_of(request: web.Request) -> GatewayState:
    return request.app[STATE]
