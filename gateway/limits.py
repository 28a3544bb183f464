"""Rate limits and brute-force protection at the handler boundary.

- :func:`rate_limit` — one token-bucket call for the caller's project and tier; the decision is
  kept on the request so the middleware puts ``X-RateLimit-*`` on whatever response goes out
  (``Retry-After`` too on a 429). Ingest limits fail OPEN when the rate-limit Redis is
  unavailable (counted in ``ratchet_ratelimit_fail_open_total``); registration limits fail closed.

Failed authentications are counted by :func:`gateway.auth.authenticate` itself, on every route
(:mod:`gateway.lockout`).
"""

from __future__ import annotations

import logging
import math
import time

from aiohttp import web
from redis.exceptions import RedisError

from gateway.auth import Caller
from gateway.metrics import RATELIMIT_FAIL_OPEN, RATELIMIT_REJECTED
from gateway.state import state_of
from models.errors import RateLimitedError, UnavailableError
from models.ratelimit import (
    CHARS_PER_TOKEN,
    INGEST,
    KEYS_PER_TOKEN,
    VALUES_PER_TOKEN,
    LimitKind,
    RateDecision,
    Tier,
    single_event_charge,
)

__all__ = ["DECISION", "apply_decision", "rate_limit"]

log = logging.getLogger(__name__)

#: Where a request's rate decision is kept for the middleware.
DECISION: web.RequestKey[RateDecision] = web.RequestKey("ratchet_rate_decision", RateDecision)


async def rate_limit(
    request: web.Request, caller: Caller, kind: LimitKind, cost: int, *,
    single_taken: int | None = None,
) -> None:
    """Take ``cost`` tokens of ``kind`` for the caller's project, or raise 429.
    ``single_taken``: ``cost`` is the rest of one event's tokens, of which this many were taken
    already; the event is charged at most a full bucket (models/ratelimit.py
    single_event_charge)."""
    state = state_of(request)
    tier = await state.tiers.tier_of(state.redis, state.keys, caller.project_id)
    if single_taken is not None:
        cost = single_event_charge(cost + single_taken, tier.per_minute(kind)) - single_taken
        if cost <= 0:
            return
    try:
        decision = await state.limiter.take(
            caller.project_id, tier, kind, cost, int(time.time() * 1000)
        )
    except (RedisError, UnavailableError) as exc:
        apply_decision(request, tier, kind, cost, exc)
        return
    apply_decision(request, tier, kind, cost, decision)


def apply_decision(
    request: web.Request, tier: Tier, kind: LimitKind, cost: int,
    decision: RateDecision | BaseException,
) -> None:
    """Act on a rate decision (or the error the limiter gave): keep it for the response
    headers, raise 429 if refused; an unavailable limiter admits ingest (fail open) and refuses
    the rest (503)."""
    if isinstance(decision, BaseException):
        if kind != INGEST:
            raise UnavailableError("the rate limiter is unavailable; retry later") from None
        RATELIMIT_FAIL_OPEN.inc()
        log.warning("rate limiter unavailable, admitting the request (fail open): %s",
                    type(decision).__name__)
        return
    request[DECISION] = decision
    if not decision.allowed:
        RATELIMIT_REJECTED.labels(kind).inc()
        retry = decision.retry_after_s
        raise RateLimitedError(_refusal(tier, kind, cost, decision),
                               retry if math.isfinite(retry) else max(decision.reset_s, 1.0))


def _refusal(tier: Tier, kind: LimitKind, cost: int, decision: RateDecision) -> str:
    unit = "events" if kind == INGEST else "registrations"
    # an operator raises a project's tier with `ratchet projects set-tier` (docs/api.md)
    higher = "; an operator can move the project to a higher tier (ratchet projects set-tier)"
    if kind == INGEST:  # models/ratelimit.py event_tokens
        higher = (f"; an event carrying many JSON values or much text counts as more than one "
                  f"(one more per {VALUES_PER_TOKEN:,} values, per {KEYS_PER_TOKEN:,} keys and "
                  f"per {CHARS_PER_TOKEN:,} characters of strings and keys){higher}")
    if cost > decision.limit:
        return (f"this request needs {cost} {unit} but the {tier.name!r} tier allows at most "
                f"{decision.limit} per minute; split it into smaller batches{higher}")
    return (f"rate limit of the {tier.name!r} tier exceeded ({decision.limit} {unit} per minute); "
            f"retry after the Retry-After seconds{higher}")
