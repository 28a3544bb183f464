"""The synchronous client: one ``httpx.Client`` (keep-alive pool) and a background batcher thread.

>>> with Client(url, api_key, "billing-bot", secret) as rc:           # doctest: +SKIP
...     rc.send({"service": "stripe", "action": "refunds.create", "payload": {"amount": 12}})
...     verdict = rc.decide({"service": "stripe", "action": "refunds.create",
...                          "payload": {"amount": 9000}}, wait_ms=2000)
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar, overload

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

__all__ = ["Client"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
_STOP = object()


#: Longest the exit hook waits for a client's queued events to be sent, seconds.
EXIT_FLUSH_S = 10.0
#: Longest ``close()`` waits for queued events by default, seconds.
CLOSE_TIMEOUT_S = 10.0
#: Clients whose batcher runs (they leave the set when closed): what the exit hook flushes.
_OPEN: weakref.WeakSet[Client] = weakref.WeakSet()
_HOOKED = False


def _close_at_exit() -> None:
    """At interpreter exit: send what open clients still have queued, within ``EXIT_FLUSH_S``
    in all (a gateway that does not answer must not hold the exit for its whole retry budget)."""
    deadline = time.monotonic() + EXIT_FLUSH_S
    for client in list(_OPEN):
        client.close(timeout=max(0.0, deadline - time.monotonic()))


class Client:
    """Signed events, verdicts and approvals for one agent (thread-safe).

    ``send``/``send_many`` queue events for the background batcher (``batch_size`` events or
    ``linger_ms`` after the first, whichever comes first) and return futures; ``decide`` sends
    one event now and returns its :class:`Verdict`. Close the client (or use ``with``) to flush.
    """

    def __init__(self, base_url: str, api_key: str, agent_id: str, agent_secret: str, *,
                 transport: httpx.BaseTransport | None = None, **options: Any) -> None:
        self.config = Config(base_url, api_key, agent_id, agent_secret, **options)
        self._core = Core(self.config)
        self._http = httpx.Client(base_url=self.config.base_url, timeout=self.config.timeout_s,
                                  transport=transport)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Client:  # noqa: PYI034  (typing.Self needs Python 3.11)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Send what is queued, stop the batcher, close the connections. ``timeout``: wait at
        most this many seconds (default 10) for the queued events; those not sent by then fail
        with :class:`UnavailableError` (``None``: wait as long as sending takes)."""
        with self._lock:
            thread, self._thread = self._thread, None
        _OPEN.discard(self)
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                self._abandon()
        self._http.close()

    def _abandon(self) -> None:
        """Fail what is still queued (``close`` ran out of time; the batcher is stopping)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is _STOP:
                self._queue.task_done()
                continue
            self._settle([item], [(None, UnavailableError(
                "not sent: the client was closed before the gateway took it"))])

    # --- HTTP with retries --------------------------------------------------------------------
    @overload
    def _call(self, request: Request, parse: None = None,
              deadline: float | None = None) -> Any: ...

    @overload
    def _call(self, request: Request, parse: Callable[[dict[str, Any]], R],
              deadline: float | None = None) -> R: ...

    def _call(self, request: Request, parse: Callable[[dict[str, Any]], Any] | None = None,
              deadline: float | None = None) -> Any:
        """Send ``request`` (retried as the module says) and read its answer (``parse``: see
        :meth:`Core.read`), all before ``deadline`` (``time.monotonic()``; default: the
        client's ``timeout_s`` plus a long poll's ``wait_ms`` from now)."""
        if deadline is None:
            deadline = self._core.deadline(request)
        attempt = 0
        while True:
            if time.monotonic() >= deadline:
                raise self._core.timed_out(request.method, request.path)
            try:
                status, headers, content = self._attempt(request, deadline)
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
            time.sleep(delay)
            attempt += 1

    def _attempt(self, request: Request, deadline: float) -> tuple[int, httpx.Headers, bytes]:
        """One HTTP exchange, its body streamed (at most ``max_response_bytes``) and over by
        ``deadline``: every read waits at most until then, and a body arriving in several reads
        has its connection cut at the deadline (a gateway trickling bytes cannot hold it)."""
        remaining = max(0.001, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(self.config.timeout_s, remaining))
        with self._http.stream(request.method, request.path, params=request.params,
                               headers=request.headers, content=request.body,
                               timeout=timeout) as resp:
            body = self._core.body(resp.status_code, resp.headers, deadline)
            timer: threading.Timer | None = None
            try:
                for chunk in resp.iter_bytes():
                    body.add(chunk)
                    if timer is None:
                        timer = threading.Timer(max(0.0, deadline - time.monotonic()),
                                                _cut, (resp,))
                        timer.daemon = True
                        timer.start()
            finally:
                if timer is not None:
                    timer.cancel()
            return resp.status_code, resp.headers, body.content()

    def project_id(self) -> str:
        """The API key's project (asked once with ``GET /v1/whoami``): part of every signature."""
        return self._project_id()

    def _project_id(self, deadline: float | None = None) -> str:
        if not self.config.project_id:
            self.config.project_id = self._call(
                Request("GET", "/v1/whoami", self._core.headers()), self._core.project_of,
                deadline)
        return self.config.project_id

    # --- sending ------------------------------------------------------------------------------
    def post(self, event: Mapping[str, Any]) -> Accepted:
        """Send one event now (``POST /v1/events``) without waiting for its verdict."""
        deadline = self._core.deadline()
        self._project_id(deadline)
        return self._call(self._core.single(self._core.complete(event)), self._core.accepted,
                          deadline)

    def send(self, event: Mapping[str, Any]) -> Future[Accepted]:
        """Queue one event for the batcher; the future holds its :class:`Accepted` or error."""
        return self.send_many([event])[0]

    def send_many(self, events: Sequence[Mapping[str, Any]]) -> list[Future[Accepted]]:
        """Queue events for the batcher (in order); one future per event. Never blocks on the
        network: the project id is asked by the batcher, and a gateway that cannot be reached
        fails the futures, not this call."""
        futures: list[Future[Accepted]] = []
        items = [self._core.complete(e) for e in events]
        self._ensure_batcher()
        for item in items:
            fut: Future[Accepted] = Future()
            futures.append(fut)
            problem = self._core.unsignable(item)
            if problem is not None:
                fut.set_exception(problem)
            else:
                self._queue.put((item, fut, 0))
        return futures

    def flush(self) -> None:
        """Block until every queued event has been answered."""
        self._queue.join()

    def _ensure_batcher(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._batch_loop, name="ratchet-batcher",
                                                daemon=True)
                self._thread.start()
                # fire-and-forget: a script that ends without close() still sends what it queued
                global _HOOKED
                _OPEN.add(self)
                if not _HOOKED:
                    _HOOKED = True
                    atexit.register(_close_at_exit)

    def _batch_loop(self) -> None:
        linger = self.config.linger_ms / 1000
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                self._queue.task_done()
                return
            batch = [first]
            deadline = time.monotonic() + linger
            while len(batch) < self.config.batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.task_done()
                    stop = True
                    break
                batch.append(nxt)
            self._post_batch(batch)
        # drain what arrived before the stop marker was read
        rest = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for i in range(0, len(rest), self.config.batch_size):
            self._post_batch(rest[i:i + self.config.batch_size])

    def _post_batch(self, batch: list[Any]) -> None:
        """Send queued items: in requests of at most ``max_batch_bytes``, in order."""
        try:
            self.project_id()  # here, not in send(): a failure belongs to the futures
            counts = self._core.split([item for item, _, _ in batch])
        except BaseException as exc:  # noqa: BLE001  (every future learns the failure)
            self._settle(batch, [(None, exc)] * len(batch))
            return
        at = 0
        for count in counts:
            self._post_part(batch[at:at + count])
            at += count

    def _post_part(self, part: list[Any]) -> None:
        """One batch request (signed now) of ``part``; items answered 503 or 413 go again at
        once, before anything queued later (an agent's events keep their order); a request
        refused as too large (413: the gateway's limit is smaller) is split in two."""
        while part:
            try:
                results = self._call(self._core.batch([item for item, _, _ in part]),
                                     functools.partial(self._core.batch_results, count=len(part)))
            except BaseException as exc:  # noqa: BLE001  (every future learns the failure)
                if getattr(exc, "status", 0) == 413 and len(part) > 1:
                    half = len(part) // 2
                    self._post_part(part[:half])
                    self._post_part(part[half:])
                    return
                self._settle(part, [(None, exc)] * len(part))
                return
            done, part, broker = self._core.triage(part, results)
            self._settle([p for p, _ in done], [r for _, r in done])
            if broker:
                time.sleep(self._core.retry_delay(0, None, None) or 0.0)

    def _settle(self, part: list[Any], results: list[tuple[Accepted | None, Any]]) -> None:
        for (_, fut, _), answer in zip(part, results):
            try:
                Core.settle(fut, answer)
            finally:
                self._queue.task_done()

    # --- verdicts -----------------------------------------------------------------------------
    def verdict(self, event_id: str, *, wait_ms: int = 0) -> Verdict | None:
        """The event's verdict (with the human decision, if any), or ``None`` if not decided.
        Over within ``timeout_s`` plus ``wait_ms``."""
        return self._verdict(event_id, wait_ms, None)

    def _verdict(self, event_id: str, wait_ms: int, deadline: float | None) -> Verdict | None:
        try:
            return self._call(self._core.verdict_request(event_id, wait_ms),
                              lambda body: self._core.verdict_of(body, event_id), deadline)
        except RatchetError as exc:
            if exc.status == 404:
                return None
            raise

    def decide(self, event: Mapping[str, Any], *, wait_ms: int = 2000,
               timeout_s: float = 10.0) -> Verdict:
        """Send one event now and return its verdict: waits ``wait_ms`` on the request, then
        polls until ``timeout_s`` (:class:`DecisionTimeout` after that). The whole call —
        retries and ``Retry-After`` waits included — is over within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        self._project_id(deadline)
        item = self._core.complete(event)
        event_id = item["event_id"]
        verdict = self._call(self._core.single(item, wait_ms=long_poll_ms(wait_ms, deadline)),
                             lambda body: self._core.decided(body, event_id), deadline)
        if verdict is not None:
            return verdict
        return self._poll(event_id, deadline, need_human=False)

    def wait_for_decision(self, event_id: str, timeout_s: float = 300.0) -> Verdict:
        """Block until the event has a verdict that is not a pending pause (a person approved
        or rejected it); :class:`ApprovalTimeout` if it is still paused after ``timeout_s``."""
        return self._poll(event_id, time.monotonic() + timeout_s, need_human=True)

    def _poll(self, event_id: str, deadline: float, *, need_human: bool) -> Verdict:
        last: Verdict | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            started = time.monotonic()
            try:
                last = self._verdict(event_id, long_poll_ms(int(remaining * 1000), deadline),
                                     deadline)
            except UnavailableError as exc:
                if exc.code == TIMEOUT_CODE:
                    break
                raise
            if last is not None and not (need_human and last.paused):
                return last
            if time.monotonic() - started < self.config.poll_interval_s:
                time.sleep(min(self.config.poll_interval_s, max(0.0, deadline - time.monotonic())))
        if last is not None and last.paused:
            raise ApprovalTimeout(f"event {event_id} is still paused", event_id=event_id)
        raise DecisionTimeout(f"no verdict for event {event_id} yet", event_id=event_id)

    # --- approvals (admin) --------------------------------------------------------------------
    def resolve(self, event_id: str, decision: str, reason: str = "") -> dict[str, Any]:
        """Approve or reject a paused event (``decision``: ``approve`` | ``reject``)."""
        req = self._core.resolve_request(event_id, decision, reason)
        return dict(self._call(req))

    def pending(self, limit: int = 100, agent_id: str | None = None) -> list[Verdict]:
        """Paused events waiting for a person, oldest first (``agent_id``: that agent's only)."""
        return self._call(Request("GET", "/v1/approvals", self._core.headers(),
                                  self._core.pending_params(limit, agent_id)),
                          self._core.pending_of)

    # --- guarding tool calls --------------------------------------------------------------------
    @contextlib.contextmanager
    def checkpoint(self, service: str, action: str, payload: Mapping[str, Any] | None = None,
                   *, timeout_s: float = 300.0, wait_ms: int = 2000,
                   **fields: Any) -> Iterator[Verdict]:
        """Ask before doing: the body runs only if the verdict allows it; a ``pause`` blocks
        until a person decides. :class:`ActionRejected` if refused, :class:`ApprovalTimeout`."""
        event = {"service": service, "action": action, "payload": dict(payload or {}), **fields}
        verdict = self.decide(event, wait_ms=wait_ms, timeout_s=min(timeout_s, 30.0))
        if verdict.paused:
            verdict = self.wait_for_decision(verdict.event_id, timeout_s)
        if not verdict.allowed:
            raise ActionRejected(f"{service}/{action} refused: {verdict.final_action}",
                                 verdict=verdict)
        yield verdict

    def guard(self, service: str, action: str | None = None, *,
              payload: Callable[..., Mapping[str, Any]] | None = None,
              timeout_s: float = 300.0, **fields: Any) -> Callable[[F], F]:
        """Decorator: every call of the tool function is an event (payload: its arguments, or
        ``payload(*args, **kwargs)``) and runs only if allowed — see :meth:`checkpoint`."""
        def wrap(fn: F) -> F:
            name = action or fn.__name__

            @functools.wraps(fn)
            def inner(*args: Any, **kwargs: Any) -> Any:
                body = payload(*args, **kwargs) if payload else arguments_payload(fn, args, kwargs)
                with self.checkpoint(service, name, body, timeout_s=timeout_s, **fields):
                    return fn(*args, **kwargs)
            return inner  # type: ignore[return-value]
        return wrap


def _cut(resp: httpx.Response) -> None:
    """At a call's deadline: shut the answer's socket down, which ends a read blocked on it."""
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
