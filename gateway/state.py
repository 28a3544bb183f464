"""What one gateway process holds: settings, clients, and the requests waiting for verdicts."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis

from gateway.publisher import Publisher
from gateway.waiters import Waiters
from ratchet.idempotency import EventIds, IdempotencyStore
from ratchet.keys import Keys
from ratchet.settings import Settings
from ratchet.verdicts import VerdictStore

__all__ = ["STATE", "GatewayState"]


@dataclass
class GatewayState:
    settings: Settings
    keys: Keys
    redis: Redis
    store: VerdictStore
    publisher: Publisher
    waiters: Waiters
    idempotency: IdempotencyStore
    event_ids: EventIds


STATE: web.AppKey[GatewayState] = web.AppKey("ratchet_gateway_state", GatewayState)


def state_of(request: web.Request) -> GatewayState:
    return request.app[STATE]
