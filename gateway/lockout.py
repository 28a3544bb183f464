"""Brute-force protection: failed authentications counted per client address, one counter for
every route that takes a key (and for signup tokens).

Once an address has failed ``auth_failure_limit`` times within ``auth_failure_window_s``, every
wrong key it sends gets 429 on every authenticated route until the window ends (not counted
further, and cheaper than a 401: no second lookup). A right key is still served: keys are 256-bit
random, so the lockout is about the load of guessing, not its odds, and one client retrying a
stale key behind an address many share (NAT, a proxy) must not lock every other client there
out (Dec 5 attack run, round 9: ten wrong keys locked another tenant out for 15 minutes). A
request without any key is not a guess and is not counted.
"""

from __future__ import annotations

from aiohttp import web

from gateway.client_ip import client_ip, limit_subject
from gateway.metrics import RATELIMIT_REJECTED
from gateway.state import GatewayState
from models.errors import RateLimitedError

__all__ = ["check_auth_failures", "peer_ip", "raise_if_locked_out", "record_auth_failure"]


def peer_ip(request: web.Request, state: GatewayState) -> str:
    """The client address per-address limits count (IPv6: its /64); see gateway.client_ip."""
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
    return limit_subject(client_ip(request.remote, forwarded, state.trusted_proxies))


def raise_if_locked_out(state: GatewayState, count: bytes | str | None, ttl: int) -> None:
    """429 if ``count`` (the address's failure counter, as Redis answered it) is at the limit."""
    if count is not None and int(count) >= state.settings.auth_failure_limit:
        RATELIMIT_REJECTED.labels("auth_failures").inc()
        raise RateLimitedError(
            "too many failed authentications from this address; retry later", max(int(ttl), 1)
        )


async def check_auth_failures(state: GatewayState, ip: str) -> None:
    """429 if ``ip`` has failed authentication too often in the current window."""
    key = state.keys.auth_failures(ip)
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = await pipe.execute()
    raise_if_locked_out(state, count, ttl)


async def record_auth_failure(state: GatewayState, ip: str) -> None:
    key = state.keys.auth_failures(ip)
    async with state.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, state.settings.auth_failure_window_s, nx=True)
        await pipe.execute()
