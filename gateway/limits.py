"""Rate limits and brute-force protection at the handler boundary.

- :func:`rate_limit` — one token-bucket call for the caller's project and tier; the decision is
  kept on the request so the middleware puts ``X-RateLimit-*`` on whatever response goes out
  (``Retry-After`` too on a 429). Ingest limits fail OPEN when the rate-limit Redis is
  unavailable (counted in ``ratchet_ratelimit_fail_open_total``); the others fail closed.
- :func:`take_api` / :func:`charge_api` — every other authenticated call (reads, configuration
  writes) takes one ``api`` token before its work and the rest of its tokens, by the bytes it
  sent and returned (models/ratelimit.py ``api_tokens``), after it: a charge for work done, so
  the bucket may go below zero and the project's next calls wait (429) until it refilled.

Failed authentications are counted by :func:`gateway.auth.authenticate` itself, on every route
(:mod:`gateway.lockout`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator

from aiohttp import web
from redis.exceptions import RedisError

from gateway.body import BodyTooLarge
from gateway.caller import Caller
from gateway.holds import API_CALLS
from gateway.metrics import RATELIMIT_FAIL_OPEN, RATELIMIT_REJECTED
from gateway.state import state_of
from models.errors import RateLimitedError, RedisUnavailableError, UnavailableError
from models.ratelimit import (
    AGENT_ENVELOPE_TOKENS,
    API,
    API_BYTES_PER_TOKEN,
    CHARS_PER_TOKEN,
    INGEST,
    KEYS_PER_TOKEN,
    PRECHARGE_BYTES,
    SPREAD,
    VALUES_PER_TOKEN,
    Bucket,
    LimitKind,
    RateDecision,
    Tier,
    body_tokens,
    single_event_charge,
    work_tokens,
)

__all__ = [
    "API_PROJECT", "DECISION", "EMPTY", "EmptyBuckets", "apply_decision", "charge_api",
    "charged_work", "end_api", "rate_limit", "take_api", "take_body",
]

log = logging.getLogger(__name__)

#: Where a request's rate decision is kept for the middleware.
DECISION: web.RequestKey[RateDecision] = web.RequestKey("ratchet_rate_decision", RateDecision)
#: The project an API call's first token was taken from (:func:`take_api`): the middleware
#: charges the rest of the call's tokens to it (:func:`charge_api`).
API_PROJECT: web.RequestKey[str] = web.RequestKey("ratchet_api_project", str)
#: The bucket an API call's tokens come from (:func:`take_api`).
API_KIND: web.RequestKey[str] = web.RequestKey("ratchet_api_kind", str)
#: CPU seconds an API call's handler measured for work its bytes do not show (:func:`charged_work`).
API_WORK_S: web.RequestKey[float] = web.RequestKey("ratchet_api_work_s", float)
#: The project whose count of API calls in flight this call holds (:func:`take_api`).
API_IN_FLIGHT: web.RequestKey[str] = web.RequestKey("ratchet_api_in_flight", str)


async def rate_limit(
    request: web.Request, caller: Caller, kind: LimitKind, cost: int, *,
    single_taken: int | None = None, spread: int = 0,
) -> int:
    """Take ``cost`` tokens of ``kind`` for the caller's project, or raise 429; the tokens
    taken. ``single_taken``: ``cost`` is the rest of one event's tokens, of which this many were
    taken already; the event is charged at most a full bucket (models/ratelimit.py
    single_event_charge). ``spread``: a batch's envelope tokens, taken from the project's
    spread bucket too (models/ratelimit.py ``SPREAD_BURST_S``)."""
    return await _take(request, caller.project_id, kind, cost, single_taken=single_taken,
                       spread=spread)


async def take_body(request: web.Request, caller: Caller, *, single: bool) -> int:
    """Before an ingest body is read: the tokens its size takes (models/ratelimit.py
    ``body_tokens``; a body of unknown length counts as the largest allowed), or 429 — so a
    refused request costs no reading and no parsing. The tokens taken: one event sent alone
    takes at least one (a full bucket at most); a batch of up to ``PRECHARGE_BYTES`` none (all
    its tokens are taken at once after it is parsed: all or nothing)."""
    state = state_of(request)
    size = request.content_length
    if size is not None and size > state.settings.max_body_bytes:
        raise BodyTooLarge(max_size=state.settings.max_body_bytes, actual_size=size)  # 413
    if not single and size is not None and size <= PRECHARGE_BYTES:
        return 0
    cost = body_tokens(state.settings.max_body_bytes if size is None else size)
    return await rate_limit(request, caller, INGEST, max(cost, 1),
                            single_taken=0 if single else None)


async def _take(
    request: web.Request, project_id: str, kind: LimitKind, cost: int, *,
    single_taken: int | None = None, spread: int = 0,
) -> int:
    state = state_of(request)
    tier = await state.tiers.tier_of(state.redis, state.keys, project_id)
    if single_taken is not None:
        cost = single_event_charge(cost + single_taken, tier.per_minute(kind)) - single_taken
        if cost <= 0:
            return 0
    try:
        decision = await state.limiter.take(project_id, tier, kind, cost, int(time.time() * 1000),
                                            spread=spread)
    except (RedisError, UnavailableError) as exc:
        apply_decision(request, tier, kind, cost, exc)
        return cost
    apply_decision(request, tier, kind, cost, decision, project_id, spread=spread)
    return cost


async def take_api(request: web.Request, project_id: str, role: str = "admin") -> None:
    """The first token of an API call, before its work: 429 while the project's bucket is spent
    (by earlier calls' sizes too), or while it has its cap of calls in flight on this gateway
    (long polls and streams aside: :mod:`gateway.holds` caps those). An ingest key's calls (an
    agent reading its verdicts) take the ``ingest`` bucket, so a compromised agent cannot spend
    the ``api`` bucket the project's admins need to approve, reject or revoke."""
    held = request.method == "GET" and (request.query.get("wait_ms", "0") not in ("", "0")
                                        or request.path == "/v1/decisions:stream")
    if not held:
        calls = request.app[API_CALLS]
        if not calls.enter(project_id):
            RATELIMIT_REJECTED.labels(API).inc()
            raise RateLimitedError(
                f"this project already has {calls.per_project} API calls in flight on this "
                "gateway; wait for one to finish", retry_after_s=1)
        request[API_IN_FLIGHT] = project_id  # the middleware lets it go when the call ends
    kind: LimitKind = INGEST if role == "ingest" else API
    await _take(request, project_id, kind, 1)
    request[API_PROJECT] = project_id
    request[API_KIND] = kind


@contextlib.contextmanager
def charged_work(request: web.Request) -> Iterator[None]:
    """Measure the CPU of the synchronous work inside (it must not await: the thread's clock
    would count other requests) and charge it with the call's tokens (:func:`charge_api`,
    models/ratelimit.py ``work_tokens``) — also when it raises (a policy refused at its last rule
    compiled all the others)."""
    started = time.thread_time()
    try:
        yield
    finally:
        request[API_WORK_S] = request.get(API_WORK_S, 0.0) + time.thread_time() - started


def end_api(request: web.Request) -> None:
    """The call counted by :func:`take_api` has ended (every way: answer, error, cancel)."""
    project_id = request.get(API_IN_FLIGHT)
    if project_id is not None:
        request.app[API_CALLS].leave(project_id)
        del request[API_IN_FLIGHT]


async def charge_api(
    request: web.Request, request_bytes: int, response_bytes: int
) -> RateDecision | None:
    """The rest of an API call's tokens, once its size is known — taken even if the bucket has
    fewer (it goes below zero and the next calls wait). The decision (kept for the response's
    headers when they are not sent yet), or ``None``: nothing more to charge, or the limiter
    failed (logged; the call was served)."""
    project_id = request.get(API_PROJECT)
    extra = work_tokens(request_bytes, response_bytes, request.get(API_WORK_S, 0.0)) - 1
    if project_id is None or extra <= 0:
        return None
    state = state_of(request)
    kind = request.get(API_KIND, API)
    try:
        tier = await state.tiers.tier_of(state.redis, state.keys, project_id)
        decision = await state.limiter.take(project_id, tier, kind, extra,
                                            int(time.time() * 1000), debt=True)
    except (RedisError, UnavailableError) as exc:
        log.warning("could not charge an API call's size (%d tokens): %s", extra,
                    type(exc).__name__)
        return None
    request[DECISION] = decision
    return decision


class EmptyBuckets:
    """Projects whose ingest bucket this gateway last saw refuse a request, until it could pass.

    A refused ingest request marks its project for the time its refused cost takes to refill
    (one token's time when the bucket was empty); until then the one-round-trip admission
    answers the project's requests of more than 8 KB 429 before reading their bodies (a flood of
    bodies just under the size that is charged before reading would otherwise each be read and
    parsed to be refused). Round 11 of the outside attack runs: marking only a bucket seen at
    zero missed batches refused for costing more than the tokens left — refused requests take no
    tokens, so the bucket hovered at 200–500 and every 63 KB batch was parsed (another tenant's
    verdicts at 1.4 s). In process memory: no Redis round trip; a project is kept only while its
    mark lasts."""

    #: Marks kept before the expired ones are dropped.
    MAX = 10_000
    #: The longest mark (a refused cost larger than the bucket never passes: its Retry-After is
    #: the bucket's refill time).
    LONGEST_S = 60.0

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def note(self, project_id: str, decision: RateDecision) -> None:
        if decision.allowed or decision.limit <= 0:
            return
        wait = decision.retry_after_s
        if not math.isfinite(wait) or wait <= 0:
            wait = 60.0 / decision.limit
        now = time.monotonic()
        self.until[project_id] = max(self.until.get(project_id, 0.0),
                                     now + min(wait, self.LONGEST_S))
        if len(self.until) > self.MAX:
            for p in [p for p, t in self.until.items() if t <= now]:
                del self.until[p]

    def refuse_if_empty(self, project_id: str) -> None:
        """429 if the project's ingest bucket was seen empty and no token is back yet."""
        until = self.until.get(project_id)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self.until[project_id]
            return
        RATELIMIT_REJECTED.labels(INGEST).inc()
        raise RateLimitedError("rate limit exceeded: this project's ingest bucket is empty; "
                               "retry after the Retry-After seconds", max(left, 1.0))


#: Where the application keeps its :class:`EmptyBuckets`.
EMPTY = web.AppKey("empty_buckets", EmptyBuckets)


def apply_decision(
    request: web.Request, tier: Tier, kind: LimitKind, cost: int,
    decision: RateDecision | BaseException, project_id: str | None = None, *, spread: int = 0,
) -> None:
    """Act on a rate decision (or the error the limiter gave): keep it for the response
    headers, raise 429 if refused; an unavailable limiter admits ingest (fail open) and refuses
    the rest (503). ``spread``: the envelope tokens the request asked of the spread bucket."""
    if isinstance(decision, BaseException):
        if kind != INGEST:
            raise RedisUnavailableError("the rate limiter is unavailable; retry later") from None
        RATELIMIT_FAIL_OPEN.inc()
        log.warning("rate limiter unavailable, admitting the request (fail open): %s",
                    type(decision).__name__)
        return
    request[DECISION] = decision
    if not decision.allowed:
        retry = decision.retry_after_s
        if decision.refused_by == SPREAD:  # the ingest bucket had the tokens: not marked empty
            RATELIMIT_REJECTED.labels(SPREAD).inc()
            bucket = state_of(request).limiter.spread_bucket(tier)
            raise RateLimitedError(_spread_refusal(tier, bucket, spread),
                                   retry if math.isfinite(retry) else
                                   bucket.capacity / bucket.refill_per_ms / 1000)
        if kind == INGEST and project_id is not None:
            request.app[EMPTY].note(project_id, decision)
        RATELIMIT_REJECTED.labels(kind).inc()
        raise RateLimitedError(_refusal(tier, kind, cost, decision),
                               retry if math.isfinite(retry) else max(decision.reset_s, 1.0))


def _spread_refusal(tier: Tier, bucket: Bucket, spread: int) -> str:
    burst = bucket.capacity
    agents = burst // AGENT_ENVELOPE_TOKENS
    return (f"this project sent too many agents' events at once: a batch takes "
            f"{AGENT_ENVELOPE_TOKENS} more tokens for each agent after its first (this one "
            f"{spread}), and the {tier.name!r} tier allows {burst:,} such tokens in a burst "
            f"(about {agents:,} agents after the first of each batch), refilled at four fifths "
            f"of its ingest rate; the batch's events were charged all the same (it was read); "
            f"retry after the Retry-After seconds, or send each agent's events together in "
            f"fewer batches")


def _refusal(tier: Tier, kind: LimitKind, cost: int, decision: RateDecision) -> str:
    unit = {INGEST: "events", API: "calls"}.get(kind, "registrations")
    # an operator raises a project's tier with `ratchet projects set-tier` (docs/api.md)
    higher = "; an operator can move the project to a higher tier (ratchet projects set-tier)"
    if kind == INGEST:  # models/ratelimit.py event_tokens
        higher = (f"; an event carrying many JSON values or much text counts as more than one "
                  f"(one more per {VALUES_PER_TOKEN:,} values, per {KEYS_PER_TOKEN:,} keys and "
                  f"per {CHARS_PER_TOKEN:,} characters of strings and keys){higher}")
    if kind == API:
        higher = (f"; reads and configuration calls take one token plus one per "
                  f"{API_BYTES_PER_TOKEN:,} bytes they send and return (ask for smaller pages: "
                  f"limit=){higher}")
    if cost > decision.limit:
        return (f"this request needs {cost} {unit} but the {tier.name!r} tier allows at most "
                f"{decision.limit} per minute; split it into smaller batches{higher}")
    return (f"rate limit of the {tier.name!r} tier exceeded ({decision.limit} {unit} per minute); "
            f"retry after the Retry-After seconds{higher}")
