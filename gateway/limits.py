"""Rate limits and brute-force protection at the handler boundary.

- :func:`rate_limit` — one token-bucket call for the caller's project and tier; the decision is
  kept on the request so the middleware puts ``X-RateLimit-*`` on whatever response goes out
  (``Retry-After`` too on a 429). Ingest limits fail OPEN when the rate-limit Redis is
  unavailable (counted in ``ratchet_ratelimit_fail_open_total``); registration limits fail closed.
- :func:`guarded_authenticate` — authentication that counts failures per client IP and answers
  429 once an IP has failed ``auth_failure_limit`` times within the window.
"""

from __future__ import annotations

import logging
import math
import time

from aiohttp import web
from redis.exceptions import RedisError

from gateway.auth import Caller, authenticate
from gateway.client_ip import Network, client_ip, limit_subject
from gateway.metrics import RATELIMIT_FAIL_OPEN, RATELIMIT_REJECTED
from gateway.state import GatewayState, state_of
from models.errors import AuthError, RateLimitedError, UnavailableError
from models.ratelimit import INGEST, LimitKind, RateDecision, Tier

__all__ = [
    "DECISION",
    "check_auth_failures",
    "guarded_authenticate",
    "peer_ip",
    "rate_limit",
    "record_auth_failure",
]

log = logging.getLogger(__name__)

#: Where a request's rate decision is kept for the middleware.
DECISION: web.RequestKey[RateDecision] = web.RequestKey("ratchet_rate_decision", RateDecision)


async def rate_limit(request: web.Request, caller: Caller, kind: LimitKind, cost: int) -> None:
    """Take ``cost`` tokens of ``kind`` for the caller's project, or raise 429."""
    state = state_of(request)
    tier = await state.tiers.tier_of(state.redis, state.keys, caller.project_id)
    try:
        decision = await state.limiter.take(
            caller.project_id, tier, kind, cost, int(time.time() * 1000)
        )
    except (RedisError, UnavailableError) as exc:
        if kind != INGEST:
            raise UnavailableError("the rate limiter is unavailable; retry later") from None
        RATELIMIT_FAIL_OPEN.inc()
        log.warning("rate limiter unavailable, admitting the request (fail open): %s",
                    type(exc).__name__)
        return
    request[DECISION] = decision
    if not decision.allowed:
        RATELIMIT_REJECTED.labels(kind).inc()
        retry = decision.retry_after_s
        raise RateLimitedError(_refusal(tier, kind, cost, decision),
                               retry if math.isfinite(retry) else max(decision.reset_s, 1.0))


def _refusal(tier: Tier, kind: LimitKind, cost: int, decision: RateDecision) -> str:
    unit = "events" if kind == INGEST else "registrations"
    if cost > decision.limit:
        return (f"this request needs {cost} {unit} but the {tier.name!r} tier allows at most "
                f"{decision.limit} per minute; split it into smaller batches")
    return (f"rate limit of the {tier.name!r} tier exceeded ({decision.limit} {unit} per minute); "
            "retry after the Retry-After seconds")


def peer_ip(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The client address per-address limits count (IPv6: its /64); see gateway.client_ip."""
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
    return limit_subject(client_ip(request.remote, forwarded, trusted))


async def check_auth_failures(state: GatewayState, ip: str) -> None:
    """429 if ``ip`` has failed authentication too often in the current window."""
    key = state.keys.auth_failures(ip)
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    if count is not None and int(count) >= state.settings.auth_failure_limit:
        RATELIMIT_REJECTED.labels("auth_failures").inc()
        raise RateLimitedError(
            "too many failed authentications from this address; retry later", max(int(ttl), 1)
        )


async def record_auth_failure(state: GatewayState, ip: str) -> None:
    key = state.keys.auth_failures(ip)
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, state.settings.auth_failure_window_s, nx=True)
        await pipe.execute()


async def guarded_authenticate(request: web.Request) -> Caller:
    """:func:`authenticate`, refused with 429 while the client IP is over its failure budget."""
    state = state_of(request)
    ip = peer_ip(request, state.trusted_proxies)
    await check_auth_failures(state, ip)
    try:
        return await authenticate(request, state)
    except AuthError:
        await record_auth_failure(state, ip)
        raise
