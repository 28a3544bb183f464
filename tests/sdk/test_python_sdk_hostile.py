"""The Python SDK against a gateway that misbehaves (attack run 9, R5–R7), played by fake
transports and a raw local socket — no Redis or Kafka: a call's timeout bounds the whole call
(retries, Retry-After waits and a body trickling in), an answer larger than
``max_response_bytes`` is refused while it streams, and a malformed 2xx answer — or a verdict
of another event — is a typed :class:`UnavailableError`, never a verdict or an AttributeError."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from ratchet_client import AsyncClient, Client, RateLimitedError, UnavailableError

pytestmark = pytest.mark.timeout(60)
EV = {"service": "crm", "action": "read", "payload": {"id": 1}}
MiB = 1024 * 1024


def _client(answer: Callable[[httpx.Request], httpx.Response], **options: Any) -> Client:
    options = {"project_id": "prj_test", "backoff_s": 0.001, "linger_ms": 1, **options}
    return Client("http://gw.test", "rk_test", "a1", "as_test",
                  transport=httpx.MockTransport(answer), **options)


def _aclient(answer: Callable[[httpx.Request], Any], **options: Any) -> AsyncClient:
    options = {"project_id": "prj_test", "backoff_s": 0.001, "linger_ms": 1, **options}
    return AsyncClient("http://gw.test", "rk_test", "a1", "as_test",
                       transport=httpx.MockTransport(answer), **options)


class Trickle(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of one byte every ``every`` seconds, without end."""

    def __init__(self, every: float) -> None:
        self.every = every

    def __iter__(self) -> Iterator[bytes]:
        while True:
            yield b" "
            time.sleep(self.every)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            yield b" "
            await asyncio.sleep(self.every)


class Endless(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A JSON string without end, 1 MiB a chunk; ``sent`` counts the chunks taken."""

    def __init__(self) -> None:
        self.sent = 0

    def _chunks(self) -> Iterator[bytes]:
        yield b'{"items":["'
        while True:
            self.sent += 1
            yield b"A" * MiB

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks():
            yield chunk


# --- R5: a call's timeout bounds the whole call --------------------------------------------------
def test_a_retry_after_longer_than_the_time_left_gives_up_at_once() -> None:
    """Before: decide(timeout_s=5) against 429 Retry-After 30 took 120 s (4 retries × 30 s)."""
    seen: list[httpx.Request] = []

    def limited(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(429, json={"error": "rate_limited", "message": "slow down"},
                              headers={"Retry-After": "30", "X-Trace-Id": "t429"})

    with _client(limited) as rc:
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as caught:
            rc.decide(EV, timeout_s=2)
        assert time.monotonic() - started < 0.5
        assert caught.value.retry_after == 30 and caught.value.trace_id == "t429"
        with pytest.raises(RateLimitedError):
            rc.post(EV)  # timeout_s (10 s) bounds post too: a 30 s wait is not taken
    assert len(seen) == 2


def test_retries_stop_at_the_deadline() -> None:
    """503 with Retry-After 1 and timeout_s 1.5: one retry fits, the second would end past the
    deadline, so the call gives up after ~1 s instead of sleeping on."""
    seen: list[float] = []

    def down(req: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return httpx.Response(503, json={"error": "unavailable"}, headers={"Retry-After": "1"})

    with _client(down, timeout_s=1.5) as rc:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            rc.resolve("e1", "approve")
        assert time.monotonic() - started < 1.4
    assert len(seen) == 2

    async def the_async_client() -> None:
        seen.clear()
        async with _aclient(down, timeout_s=1.5) as rc:
            started = time.monotonic()
            with pytest.raises(UnavailableError):
                await rc.pending()
            assert time.monotonic() - started < 1.4
        assert len(seen) == 2

    asyncio.run(the_async_client())


def test_a_body_trickling_in_cannot_hold_a_call_past_its_deadline() -> None:
    """Before: a 200 answer sending one byte every 4 s held decide(timeout_s=5) for ever (the
    read timeout applies to each read)."""
    def trickle(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Type": "application/json"},
                              stream=Trickle(0.3))

    with _client(trickle) as rc:
        for call in (lambda: rc.decide(EV, timeout_s=1), lambda: rc.verdict("e1"),
                     lambda: rc.pending()):
            rc.config.timeout_s = 1.0
            started = time.monotonic()
            with pytest.raises(UnavailableError) as caught:
                call()
            assert time.monotonic() - started < 1.6
            assert caught.value.code == "timeout"

    async def the_async_client() -> None:
        async with _aclient(trickle, timeout_s=1.0) as rc:
            started = time.monotonic()
            with pytest.raises(UnavailableError) as caught:
                await rc.decide(EV, timeout_s=1)
            assert time.monotonic() - started < 1.3 and caught.value.code == "timeout"

    asyncio.run(the_async_client())


@contextlib.contextmanager
def _trickling_server(every: float) -> Iterator[str]:
    """A real socket: answers 200 with headers at once, then a byte every ``every`` seconds."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        conns = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            conns.append(conn)

            def drip(c: socket.socket = conn) -> None:
                with contextlib.suppress(OSError):
                    c.recv(65536)
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 1000000\r\n\r\n")
                    while not stop.is_set():
                        c.sendall(b" ")
                        stop.wait(every)
            threading.Thread(target=drip, daemon=True).start()
        for c in conns:
            c.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def test_the_connection_of_a_trickling_body_is_cut_at_the_deadline() -> None:
    """On a real socket every read may wait until the deadline: a byte each 0.8 s would end
    the call only after the read that crosses it (1.6 s for a 1 s timeout); the client cuts the
    connection at the deadline instead."""
    with _trickling_server(0.8) as url, Client(url, "rk_test", "a1", "as_test",
                                              project_id="prj_test", timeout_s=1.0) as rc:
        started = time.monotonic()
        with pytest.raises(UnavailableError) as caught:
            rc.verdict("e1")
        assert time.monotonic() - started < 1.4, time.monotonic() - started
        assert caught.value.code == "timeout"


def test_close_is_bounded_by_default() -> None:
    """Before: close() waited for the batcher as long as its requests took (a slow gateway:
    180 s and more); now 10 s by default, or ``timeout``; what is still queued then fails."""
    release = threading.Event()

    def stuck(req: httpx.Request) -> httpx.Response:
        release.wait(5)
        return httpx.Response(503, json={"error": "unavailable"})

    rc = _client(stuck, batch_size=1, max_retries=0)
    first, second = rc.send_many([EV, EV])
    started = time.monotonic()
    rc.close(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert isinstance(second.exception(timeout=1), UnavailableError)  # never sent
    release.set()
    assert isinstance(first.exception(timeout=5), UnavailableError)
    from inspect import signature
    assert signature(Client.close).parameters["timeout"].default == 10.0


# --- R6: answers are read with a cap --------------------------------------------------------------
def test_an_endless_answer_is_refused_past_the_cap_while_it_streams() -> None:
    """Before: a 3 GB answer took 11.6 GB of memory, then an AttributeError."""
    bodies: list[Endless] = []

    def huge(req: httpx.Request) -> httpx.Response:
        bodies.append(Endless())
        return httpx.Response(200, headers={"X-Trace-Id": "tbig"}, stream=bodies[-1])

    with _client(huge) as rc:
        for call in (lambda: rc.decide(EV), lambda: rc.pending(), lambda: rc.verdict("e1")):
            with pytest.raises(UnavailableError, match="too large") as caught:
                call()
            assert caught.value.status == 200 and caught.value.trace_id == "tbig"
            assert bodies[-1].sent <= 17  # 16 MiB and one chunk: not the whole answer
    assert len(bodies) == 3  # not retried

    async def the_async_client() -> None:
        async with _aclient(huge, max_response_bytes=2 * MiB) as rc:
            with pytest.raises(UnavailableError, match="too large"):
                await rc.decide(EV)
            assert bodies[-1].sent <= 3

    asyncio.run(the_async_client())


def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    def declared(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": str(17 * MiB)}, stream=Endless())

    with _client(declared) as rc, pytest.raises(UnavailableError, match="too large"):
        rc.pending()


# --- R7: malformed 2xx answers are typed errors -----------------------------------------------------
MALFORMED = {
    "not JSON": b"[1,2",
    "a list": b"[1,2]",
    "verdict is a string": b'{"status":"decided","verdict":"allow","event_id":"mine"}',
    "verdict without action": b'{"status":"decided","verdict":{"event_id":"mine"}}',
    "an unknown action": b'{"status":"decided","verdict":{"event_id":"mine","action":"ok"}}',
    "another event's verdict":
        b'{"status":"decided","verdict":{"event_id":"other","action":"allow"}}',
    "score not a number":
        b'{"status":"decided","verdict":{"event_id":"mine","action":"allow","score":"x"}}',
}


@pytest.mark.parametrize("content", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_decide_answer_is_a_typed_error(content: bytes) -> None:
    def answer(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=content, headers={"X-Trace-Id": "tbad"})

    with _client(answer) as rc:
        with pytest.raises(UnavailableError) as caught:
            rc.decide({**EV, "event_id": "mine"}, timeout_s=2)
        assert caught.value.status == 200 and caught.value.trace_id == "tbad"
        assert caught.value.code == "malformed_answer"

    async def the_async_client() -> None:
        async with _aclient(answer) as rc:
            with pytest.raises(UnavailableError) as caught:
                await rc.decide({**EV, "event_id": "mine"}, timeout_s=2)
            assert caught.value.trace_id == "tbad"

    asyncio.run(the_async_client())


def test_a_verdict_of_another_event_is_never_returned() -> None:
    def other(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"event_id": "other", "verdict": {
            "event_id": "other", "action": "allow"}, "approval": None})

    with _client(other) as rc:
        with pytest.raises(UnavailableError, match="other"):
            rc.verdict("mine")
        with pytest.raises(UnavailableError, match="other"):
            rc.wait_for_decision("mine", timeout_s=2)

        @rc.guard("crm", "delete")
        def delete(id: int) -> int:
            raise AssertionError("a guard ran its tool on another event's allow")

        with pytest.raises(UnavailableError):
            delete(1)


def test_other_malformed_answers_are_typed_errors() -> None:
    def wrong(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v1/whoami":
            return httpx.Response(200, json={"project_id": 5})
        return httpx.Response(200, json={"items": "notalist", "event_id": 7,
                                         "results": [{"index": "zero"}]})

    with _client(wrong) as rc:
        with pytest.raises(UnavailableError, match="items"):
            rc.pending()
        with pytest.raises(UnavailableError, match="event_id"):
            rc.post(EV)
        err = rc.send(EV).exception(timeout=10)
        assert isinstance(err, UnavailableError) and err.status == 200
    with _client(wrong, project_id=None) as rc, pytest.raises(UnavailableError):
        rc.project_id()


async def test_async_close_is_bounded_by_default() -> None:
    async def stuck(req: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(503, json={"error": "unavailable"})

    rc = _aclient(stuck, batch_size=1, max_retries=0)
    futures = await rc.send_many([EV, EV])
    started = time.monotonic()
    await rc.close(timeout=0.5)
    assert time.monotonic() - started < 1.5
    for fut in futures:  # the one in flight and the one still queued
        assert isinstance(fut.exception(), UnavailableError)


async def test_pending_asks_for_one_agents_events_when_given() -> None:
    """``pending(limit, agent_id)`` passes the filter to ``GET /v1/approvals`` (both clients);
    without it, the project's listing."""
    asked: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    with _client(answer) as rc:
        assert rc.pending(7, agent_id="a9") == [] and rc.pending() == []
    async with _aclient(answer) as arc:
        assert await arc.pending(3, agent_id="a9") == []
    assert asked == [{"limit": "7", "agent_id": "a9"}, {"limit": "100"},
                     {"limit": "3", "agent_id": "a9"}]
