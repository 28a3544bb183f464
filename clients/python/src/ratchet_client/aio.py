"""The asyncio client: the same surface as :class:`ratchet_client.Client`, awaitable.

>>> async with AsyncClient(url, api_key, "billing-bot", secret) as rc:     # doctest: +SKIP
...     verdict = await rc.decide({"service": "stripe", "action": "refunds.create",
...                                "payload": {"amount": 12}})
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import (
    Any,
    TypeVar,
    overload,
)

import httpx

from ratchet_client._core import (
    TIMEOUT_CODE,
    Config,
    Core,
    Request,
    arguments_payload,
    long_poll_ms,
)
from ratchet_client.errors import (
    ActionRejected,
    ApprovalTimeout,
    DecisionTimeout,
    RatchetError,
    UnavailableError,
)
from ratchet_client.types import Accepted, Verdict

__all__ = ["AsyncClient"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class AsyncClient:
    """Signed events, verdicts and approvals for one agent, on the running event loop."""

    def __init__(self, base_url: str, api_key: str, agent_id: str, agent_secret: str, *,
                 transport: httpx.AsyncBaseTransport | None = None, **options: Any) -> None:
        self.config = Config(base_url, api_key, agent_id, agent_secret, **options)
        self._core = Core(self.config)
        self._http = httpx.AsyncClient(base_url=self.config.base_url,
                                       timeout=self.config.timeout_s, transport=transport)
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncClient:  # noqa: PYI034  (typing.Self: 3.11)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, timeout: float | None = 10.0) -> None:
        """Send what is queued, stop the batcher, close the connections. ``timeout``: wait at
        most this many seconds (default 10) for the queued events; those not sent by then fail
        with :class:`UnavailableError` (``None``: wait as long as sending takes)."""
        if self._task is not None and self._queue is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            while not self._queue.empty():  # what the batcher had no time to send
                self._settle(self._queue, [self._queue.get_nowait()], [(None, UnavailableError(
                    "not sent: the client was closed before the gateway took it"))])
        await self._http.aclose()

    @overload
    async def _call(self, request: Request, parse: None = None,
              deadline: float | None = None) -> Any: ...

    @overload
    async def _call(self, request: Request, parse: Callable[[dict[str, Any]], R],
              deadline: float | None = None) -> R: ...

    async def _call(self, request: Request,
                    parse: Callable[[dict[str, Any]], Any] | None = None,
                    deadline: float | None = None) -> Any:
        """Send ``request`` (retried) and read its answer, all before ``deadline`` (see
        :meth:`ratchet_client.Client._call`)."""
        if deadline is None:
            deadline = self._core.deadline(request)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._core.timed_out(request.method, request.path)
            try:
                status, headers, content = await asyncio.wait_for(
                    self._attempt(request, deadline), remaining)
            except asyncio.TimeoutError:
                raise self._core.timed_out(request.method, request.path) from None
            except httpx.TransportError as exc:
                if time.monotonic() >= deadline - 0.005:
                    raise self._core.timed_out(request.method, request.path) from exc
                delay = self._core.retry_delay(attempt, None, None, deadline)
                if delay is None:
                    raise UnavailableError(f"gateway unreachable: {exc!r}") from exc
            else:
                try:
                    return self._core.read(status, headers, content, parse)
                except RatchetError:
                    delay = (None if 200 <= status < 300
                             else self._core.retry_delay(attempt, status, headers, deadline))
                    if delay is None:
                        raise
            await asyncio.sleep(delay)
            attempt += 1

    async def _attempt(self, request: Request,
                       deadline: float) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP exchange, its body streamed (at most ``max_response_bytes``)."""
        remaining = max(0.001, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(self.config.timeout_s, remaining))
        async with self._http.stream(request.method, request.path, params=request.params,
                                     headers=request.headers, content=request.body,
                                     timeout=timeout) as resp:
            body = self._core.body(resp.status_code, resp.headers, deadline)
            async for chunk in resp.aiter_bytes():
                body.add(chunk)
            return resp.status_code, resp.headers, body.content()

    async def project_id(self) -> str:
        return await self._project_id()

    async def _project_id(self, deadline: float | None = None) -> str:
        if not self.config.project_id:
            self.config.project_id = await self._call(
                Request("GET", "/v1/whoami", self._core.headers()), self._core.project_of,
                deadline)
        return self.config.project_id

    # --- sending ------------------------------------------------------------------------------
    async def post(self, event: Mapping[str, Any]) -> Accepted:
        deadline = self._core.deadline()
        await self._project_id(deadline)
        return await self._call(self._core.single(self._core.complete(event)),
                                self._core.accepted, deadline)

    async def send(self, event: Mapping[str, Any]) -> asyncio.Future[Accepted]:
        """Queue one event for the batcher; await the returned future for its outcome."""
        return (await self.send_many([event]))[0]

    async def send_many(self, events: Sequence[Mapping[str, Any]]
                        ) -> list[asyncio.Future[Accepted]]:
        """Queue events for the batcher (in order); one future per event. Never waits for the
        network: the batcher asks the project id, and a gateway that cannot be reached fails
        the futures, not this call."""
        items = [self._core.complete(e) for e in events]
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._batch_loop(self._queue))
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Accepted]] = []
        for item in items:
            fut: asyncio.Future[Accepted] = loop.create_future()
            futures.append(fut)
            problem = self._core.unsignable(item)
            if problem is not None:
                fut.set_exception(problem)
            else:
                self._queue.put_nowait((item, fut, 0))
        return futures

    async def flush(self) -> None:
        if self._queue is not None:
            await self._queue.join()

    async def _batch_loop(self, q: asyncio.Queue[Any]) -> None:
        linger = self.config.linger_ms / 1000
        while True:
            batch = [await q.get()]
            deadline = time.monotonic() + linger
            while len(batch) < self.config.batch_size:
                try:
                    batch.append(await asyncio.wait_for(q.get(),
                                                        max(0.0, deadline - time.monotonic())))
                except asyncio.TimeoutError:
                    break
            await self._post_batch(q, batch)

    async def _post_batch(self, q: asyncio.Queue[Any], batch: list[Any]) -> None:
        """Send queued items: in requests of at most ``max_batch_bytes``, in order."""
        try:
            await self.project_id()  # here, not in send(): a failure belongs to the futures
            counts = self._core.split([item for item, _, _ in batch])
        except Exception as exc:  # noqa: BLE001  (every future learns the failure)
            self._settle(q, batch, [(None, exc)] * len(batch))
            return
        at = 0
        try:
            for count in counts:
                at += count
                await self._post_part(q, batch[at - count:at])
        except asyncio.CancelledError:  # close() ran out of time: _post_part settled its part
            self._settle(q, batch[at:], [(None, UnavailableError(
                "not sent: the client was closed before the gateway took it"))] * (len(batch) - at))
            raise

    async def _post_part(self, q: asyncio.Queue[Any], part: list[Any]) -> None:
        """One batch request (signed now) of ``part``; items answered 503 or 413 go again at
        once, before anything queued later (an agent's events keep their order); a request
        refused as too large (413: the gateway's limit is smaller) is split in two."""
        while part:
            try:
                results = await self._call(
                    self._core.batch([item for item, _, _ in part]),
                    functools.partial(self._core.batch_results, count=len(part)))
            except asyncio.CancelledError:  # close() ran out of time
                self._settle(q, part, [(None, UnavailableError(
                    "not sent: the client was closed before the gateway took it"))] * len(part))
                raise
            except Exception as exc:  # noqa: BLE001  (every future learns the failure)
                if getattr(exc, "status", 0) == 413 and len(part) > 1:
                    half = len(part) // 2
                    await self._post_part(q, part[:half])
                    await self._post_part(q, part[half:])
                    return
                self._settle(q, part, [(None, exc)] * len(part))
                return
            done, part, broker = self._core.triage(part, results)
            self._settle(q, [p for p, _ in done], [r for _, r in done])
            if broker:
                await asyncio.sleep(self._core.retry_delay(0, None, None) or 0.0)

    @staticmethod
    def _settle(q: asyncio.Queue[Any], part: list[Any],
                results: list[tuple[Accepted | None, Any]]) -> None:
        for (_, fut, _), answer in zip(part, results):
            try:
                Core.settle(fut, answer)
            finally:
                q.task_done()

    # --- verdicts -----------------------------------------------------------------------------
    async def verdict(self, event_id: str, *, wait_ms: int = 0) -> Verdict | None:
        return await self._verdict(event_id, wait_ms, None)

    async def _verdict(self, event_id: str, wait_ms: int,
                       deadline: float | None) -> Verdict | None:
        try:
            return await self._call(self._core.verdict_request(event_id, wait_ms),
                                    lambda body: self._core.verdict_of(body, event_id), deadline)
        except RatchetError as exc:
            if exc.status == 404:
                return None
            raise

    async def decide(self, event: Mapping[str, Any], *, wait_ms: int = 2000,
                     timeout_s: float = 10.0) -> Verdict:
        deadline = time.monotonic() + timeout_s
        await self._project_id(deadline)
        item = self._core.complete(event)
        event_id = item["event_id"]
        verdict = await self._call(
            self._core.single(item, wait_ms=long_poll_ms(wait_ms, deadline)),
            lambda body: self._core.decided(body, event_id), deadline)
        if verdict is not None:
            return verdict
        return await self._poll(event_id, deadline, need_human=False)

    async def wait_for_decision(self, event_id: str, timeout_s: float = 300.0) -> Verdict:
        return await self._poll(event_id, time.monotonic() + timeout_s, need_human=True)

    async def _poll(self, event_id: str, deadline: float, *, need_human: bool) -> Verdict:
        last: Verdict | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            try:
                last = await self._verdict(
                    event_id, long_poll_ms(int(remaining * 1000), deadline), deadline)
            except UnavailableError as exc:
                if exc.code == TIMEOUT_CODE:
                    break
                raise
            if last is not None and not (need_human and last.paused):
                return last
            if time.monotonic() - started < self.config.poll_interval_s:
                await asyncio.sleep(min(self.config.poll_interval_s,
                                        max(0.0, deadline - time.monotonic())))
        if last is not None and last.paused:
            raise ApprovalTimeout(f"event {event_id} is still paused", event_id=event_id)
        raise DecisionTimeout(f"no verdict for event {event_id} yet", event_id=event_id)

    async def resolve(self, event_id: str, decision: str, reason: str = "") -> dict[str, Any]:
        req = self._core.resolve_request(event_id, decision, reason)
        return dict(await self._call(req))

    async def pending(self, limit: int = 100, agent_id: str | None = None) -> list[Verdict]:
        """Paused events waiting for a person, oldest first (``agent_id``: that agent's only)."""
        return await self._call(Request("GET", "/v1/approvals", self._core.headers(),
                                        self._core.pending_params(limit, agent_id)),
                                self._core.pending_of)

    # --- guarding tool calls --------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def checkpoint(self, service: str, action: str,
                         payload: Mapping[str, Any] | None = None, *,
                         timeout_s: float = 300.0, wait_ms: int = 2000,
                         **fields: Any) -> AsyncIterator[Verdict]:
        event = {"service": service, "action": action, "payload": dict(payload or {}), **fields}
        verdict = await self.decide(event, wait_ms=wait_ms, timeout_s=min(timeout_s, 30.0))
        if verdict.paused:
            verdict = await self.wait_for_decision(verdict.event_id, timeout_s)
        if not verdict.allowed:
            raise ActionRejected(f"{service}/{action} refused: {verdict.final_action}",
                                 verdict=verdict)
        yield verdict

    def guard(self, service: str, action: str | None = None, *,
              payload: Callable[..., Mapping[str, Any]] | None = None,
              timeout_s: float = 300.0, **fields: Any) -> Callable[[F], F]:
        """Decorator for ``async def`` tool functions (see :meth:`Client.guard`)."""
        def wrap(fn: F) -> F:
            name = action or fn.__name__

            @functools.wraps(fn)
            async def inner(*args: Any, **kwargs: Any) -> Any:
                body = payload(*args, **kwargs) if payload else arguments_payload(fn, args, kwargs)
                async with self.checkpoint(service, name, body, timeout_s=timeout_s, **fields):
                    return await fn(*args, **kwargs)
            return inner  # type: ignore[return-value]
        return wrap
