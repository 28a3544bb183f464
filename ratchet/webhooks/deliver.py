"""Delivering one verdict to one webhook: sign, send, retry with backoff, per-destination breaker.

At-least-once within a budget: up to ``webhook_max_attempts`` attempts, each bounded by
``webhook_timeout_s``; between attempts a full-jitter exponential delay. Every attempt of one
delivery carries the same ``Ratchet-Delivery`` id (and a fresh signature timestamp), so receivers
deduplicate. A 2xx answer is success; anything else (3xx included: redirects are not followed),
a timeout or a connection error is a failure and counts against the destination's breaker.
While the breaker is open an attempt is not sent (``breaker_open``) and waits for the next retry.
A destination that resolves to a forbidden address is ``refused`` at once, never retried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from models.breaker import CLOSED, CircuitBreaker
from models.webhook_signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign_delivery
from models.webhooks import (
    address_problem,
    backoff_delay,
    delivery_body,
    delivery_id,
    destination_of,
)
from ratchet.config.settings import Settings
from ratchet.store.webhooks import Webhook
from ratchet.telemetry.metrics import (
    WEBHOOK_ATTEMPTS,
    WEBHOOK_BREAKER_TRANSITIONS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_DELIVERY_SECONDS,
)
from ratchet.webhooks.net import BlockedAddressError

__all__ = ["Deliverer"]

USER_AGENT = "Ratchet-Webhooks/1"


def _blocked(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, BlockedAddressError):
            return True
        seen = seen.__cause__ or getattr(seen, "os_error", None) or seen.__context__
    return False


class Deliverer:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.session = session
        self.clock, self.wall, self.sleep, self.rand = clock, wall, sleep, rand
        self.breakers: dict[str, CircuitBreaker] = {}

    def breaker(self, hook: Webhook) -> CircuitBreaker:
        """The breaker of ``hook``'s project and destination: one project's failing calls to a
        host never open another project's breaker for it (round 11 of the outside attack runs:
        a dozen failures from one tenant dropped 39 of another's 40 deliveries to that host)."""
        dest = f"{hook.project_id}\t{destination_of(hook.url)}"
        found = self.breakers.get(dest)
        if found is None:
            s = self.settings
            found = CircuitBreaker(s.webhook_breaker_failures, s.webhook_breaker_window_s,
                                   s.webhook_breaker_open_s)
            self.breakers[dest] = found
        return found

    async def deliver(self, hook: Webhook, verdict: Mapping[str, Any], *,
                      slot: Callable[[], AbstractAsyncContextManager[None]] | None = None) -> str:
        """Deliver ``verdict`` to ``hook``; returns delivered, refused or dropped. ``slot``:
        entered around each attempt (not the waits between retries: a receiver that keeps
        failing does not hold a delivery slot while it backs off)."""
        did = delivery_id(hook.id, str(verdict.get("event_id", "")))
        body = orjson.dumps(delivery_body(hook.id, hook.project_id, did, verdict))
        event = f"verdict.{verdict.get('action')}"
        s = self.settings
        for attempt in range(1, max(1, s.webhook_max_attempts) + 1):
            if attempt > 1:
                await self.sleep(backoff_delay(attempt - 1, base_s=s.webhook_backoff_base_s,
                                               cap_s=s.webhook_backoff_max_s, rand=self.rand()))
            if slot is None:
                result = await self.attempt(hook, did, event, body)
            else:
                async with slot():
                    result = await self.attempt(hook, did, event, body)
            WEBHOOK_ATTEMPTS.labels(result=result).inc()
            if result in ("delivered", "refused"):
                WEBHOOK_DELIVERIES.labels(result=result).inc()
                return result
        WEBHOOK_DELIVERIES.labels(result="dropped").inc()
        return "dropped"

    async def attempt(self, hook: Webhook, did: str, event: str, body: bytes) -> str:
        """One attempt: delivered, http_error, timeout, connect_error, refused, breaker_open."""
        breaker = self.breaker(hook)
        before = breaker.state
        if not breaker.allow(self.clock()):
            return "breaker_open"
        if breaker.state != before:
            WEBHOOK_BREAKER_TRANSITIONS.labels(state=breaker.state).inc()
        host = (urlsplit(hook.url).hostname or "").strip("[]")
        if _is_ip(host) and address_problem(
            host, allow_loopback=self.settings.webhooks_allow_loopback
        ) is not None:
            self._record(breaker, ok=False)
            return "refused"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            DELIVERY_HEADER: did,
            EVENT_HEADER: event,
            SIGNATURE_HEADER: sign_delivery(hook.secret, body, timestamp=int(self.wall())),
        }
        start = time.perf_counter()
        try:
            async with self.session.post(hook.url, data=body, headers=headers,
                                         allow_redirects=False) as resp:
                await resp.content.read(64 * 1024)  # a little of the body, then let go
                ok = 200 <= resp.status < 300
            WEBHOOK_DELIVERY_SECONDS.observe(time.perf_counter() - start)
            result = "delivered" if ok else "http_error"
        except TimeoutError:
            result, ok = "timeout", False
        except (aiohttp.ClientError, OSError) as exc:
            ok = False
            result = "refused" if _blocked(exc) else "connect_error"
        self._record(breaker, ok=ok)
        return result

    def _record(self, breaker: CircuitBreaker, *, ok: bool) -> None:
        now = self.clock()
        changed = breaker.record_success(now) if ok else breaker.record_failure(now)
        if changed is not None:
            WEBHOOK_BREAKER_TRANSITIONS.labels(state=changed).inc()

    def open_breakers(self) -> int:
        return sum(1 for b in self.breakers.values() if b.state != CLOSED)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
