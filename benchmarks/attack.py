"""A black-box attack run against a real Ratchet (Redis, Tansu, gateway, worker) from one tenant.

``python -m benchmarks.attack [--quick] [--json FILE]`` starts its own redis-server and Tansu
broker on free loopback ports, a gateway and a worker as child processes
(:func:`ratchet.sandbox.stack.local_stack`, the stack the SDK tests use, with every gateway
setting at its default), provisions two tenants, and runs each attack class from tenant A while
tenant B — on another client address, 127.0.0.2, with an agent whose events share the ingest
partition of A's agent — keeps sending one signed event every 200 ms and waiting for its
verdict. It prints one row per attack: what a safe gateway answers
(expected), what this one answered (observed), tenant B's latency while the attack ran, and
pass/fail. An attack passes when the observed answer is the expected one AND every one of B's
probes was decided within :data:`B_DEADLINE_S`.

``--quick`` (about three minutes on two shared cores) uses fewer connections and events; the
full run holds more connections and floods a whole rate-limit bucket. The load is modest on
purpose: the point is the shape of each answer and whether B stalls, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from models.envelope import agent_key
from models.ingest_schema import decode_counted
from models.ratelimit import event_tokens
from models.signing import sign
from ratchet.config.settings import Settings
from ratchet.platform.provisioning import create_agent
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.servers import RedisServer, TansuServer
from ratchet.sandbox.stack import Credentials, local_stack, provision
from ratchet.store.keys import Keys

__all__ = ["Row", "main"]

#: Every probe of tenant B must be decided within this long, seconds (a stall is a failure).
B_DEADLINE_S = 5.0
#: Tenant B's client address: per-address limits must not make A's attack B's problem.
B_ADDRESS = "127.0.0.2"
#: Both tenants' tier: 6,000 events and 300 registrations per minute.
TIERS = "std:6000:300"
#: Ingest partitions of the stack (ratchet/sandbox/stack.py): B's probing agent is chosen on
#: the partition of A's agent, so every attack on the worker is also head-of-line for B.
STACK_PARTITIONS = 2
#: Marker the attacker puts in every malformed request: an answer containing it echoed the head.
MARK = "ZQXJECHO"
DEFAULTS = Settings()
#: The only settings changed from their defaults: caps low enough to be reached within one
#: rate-limit bucket, so the run shows them working (the defaults are 10,000 each).
CHAIN_AND_AGENT_CAPS = {"max_chains_per_project": 1000, "max_agents_per_project": 50}
#: Those of them this version has (a run against an older version leaves them out).
CAPS_SET = {k: v for k, v in CHAIN_AND_AGENT_CAPS.items() if hasattr(DEFAULTS, k)}
#: aiohttp's lingering time: how long it reads what is left of an unread body before closing.
LINGER_S = 10.0


@dataclass
class Row:
    attack: str
    expected: str
    observed: str
    ok: bool
    b_p50_ms: float = 0.0
    b_p99_ms: float = 0.0
    b_probes: int = 0
    b_failed: int = 0

    @property
    def passed(self) -> bool:
        return self.ok and self.b_failed == 0


@dataclass
class Ctx:
    url: str
    host: str
    port: int
    a: Credentials
    b_key: str
    b_project: str
    b_secret: str
    b_agent: str
    quick: bool
    http: aiohttp.ClientSession
    client_a: RatchetClient
    client_b: RatchetClient
    redis: Redis
    keys: Keys
    b_paused_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- tenant B's probe --------------------------------------------------------------------------

class Probe:
    """Tenant B sends one event every 200 ms with ``wait_ms`` and records how long the decided
    answer took; anything but a decided 200 within :data:`B_DEADLINE_S` is a failure."""

    def __init__(self, client: RatchetClient) -> None:
        self.client = client
        self.samples: list[tuple[float, float, bool]] = []  # (sent at, latency s, decided)
        self._task: asyncio.Task[None] | None = None

    async def _one(self) -> None:
        start = time.monotonic()
        ev = {"event_id": str(uuid.uuid4()), "run_id": f"b-{uuid.uuid4().hex[:6]}",
              "service": "crm", "action": "contacts.read", "payload": {"id": 7}}
        ok = False
        try:
            answer = await asyncio.wait_for(self.client.send(ev, wait_ms=4000), B_DEADLINE_S)
            ok = answer.status == 200 and isinstance(answer.body, dict) and (
                answer.body.get("status") == "decided")
        except (TimeoutError, aiohttp.ClientError, OSError):
            ok = False
        latency = time.monotonic() - start
        self.samples.append((start, latency, ok and latency <= B_DEADLINE_S))

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                task = asyncio.create_task(self._one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(0.2)
        finally:
            for task in pending:
                task.cancel()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def window(self, since: float, until: float) -> tuple[float, float, int, int]:
        got = [s for s in self.samples if since <= s[0] <= until]
        if not got:
            return 0.0, 0.0, 0, 0
        lat = sorted(s[1] * 1000 for s in got)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return statistics.median(lat), p99, len(got), sum(1 for s in got if not s[2])


# --- raw HTTP ----------------------------------------------------------------------------------

async def raw(ctx: Ctx, data: bytes, timeout_s: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` byte for byte; the answer's status, headers and body (status 0: closed
    without an answer)."""
    reader, writer = await asyncio.open_connection(ctx.host, ctx.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            answer = await asyncio.wait_for(read_answer(reader), timeout_s)
    finally:
        writer.close()
    return parse_answer(answer)


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP answer: its head and ``Content-Length`` bytes of body (or up to EOF)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = await reader.read(65536)
        if not chunk:
            return got
        got += chunk
    head_, _, body = got.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head_.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    if length is None:
        return got + await reader.read()
    while len(body) < length:
        chunk = await reader.read(65536)
        if not chunk:
            break
        body += chunk
    return head_ + b"\r\n\r\n" + body


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    if not answer:
        return 0, {}, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return -1, {}, answer
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def json_error_shape(headers: dict[str, str], body: bytes) -> bool:
    """The answer is the gateway's JSON error format ({"error", "field", "message"})."""
    if not headers.get("content-type", "").startswith("application/json"):
        return False
    with contextlib.suppress(ValueError):
        parsed = orjson.loads(body)
        return isinstance(parsed, dict) and {"error", "message"} <= parsed.keys()
    return False


def describe(status: int, headers: dict[str, str], body: bytes) -> str:
    shape = "json" if json_error_shape(headers, body) else headers.get("content-type", "-") or "-"
    echo = " ECHO" if MARK.encode() in body or MARK.lower().encode() in body else ""
    return f"{status} {shape}{echo}"


def head(ctx: Ctx, method: str, path: str, extra: str = "", *, key: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: {ctx.host}\r\n{auth}{extra}").encode("latin-1")


# --- API helpers -------------------------------------------------------------------------------

async def call(ctx: Ctx, method: str, path: str, key: str | None, **kw: Any
               ) -> tuple[int, Any, dict[str, str]]:
    headers = dict(kw.pop("headers", {}))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with ctx.http.request(method, ctx.url + path, headers=headers, **kw) as resp:
        raw_body = await resp.read()
        body: Any = raw_body
        with contextlib.suppress(ValueError):
            body = orjson.loads(raw_body)
        return resp.status, body, dict(resp.headers)


def event(**over: Any) -> dict[str, Any]:
    ev = {"event_id": str(uuid.uuid4()), "run_id": "r1", "service": "crm",
          "action": "contacts.read", "payload": {"id": 1}}
    ev.update(over)
    return ev


def tokens_of(payload: dict[str, Any]) -> int:
    """The ingest tokens of an event carrying ``payload`` (models/ratelimit.py event_tokens)."""
    return event_tokens(*decode_counted(event(agent_id="a", payload=payload), "p")[2])


async def flood(ctx: Ctx, n: int, concurrency: int, prefix: str,
                payload_of: Callable[[int], dict[str, Any]]) -> tuple[list[int], float]:
    """A sends ``n`` events (``payload_of(i)``), ``concurrency`` at a time; their statuses and
    the seconds it took. Then B keeps probing for 6 s while what was accepted is decided."""
    statuses: list[int] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        payload = payload_of(i)
        async with gate:
            answer = await ctx.client_a.send(event(run_id=f"{prefix}-{i}", payload=payload))
        statuses.append(answer.status)

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    took = time.monotonic() - start
    await asyncio.sleep(6)
    return statuses, took


async def signed_post(ctx: Ctx, ev: dict[str, Any], *, ts: int | None = None,
                      body: bytes | None = None, query: str = "") -> tuple[int, Any]:
    """POST an event of tenant A signed at ``ts``; ``body`` overrides the bytes sent."""
    ev = {"agent_id": ctx.a.agent_id, **ev}
    stamp = int(time.time()) if ts is None else ts
    sig = sign(ctx.a.agent_secret, ctx.a.project_id, ev, stamp)
    status, answer, _ = await call(
        ctx, "POST", "/v1/events" + query, ctx.a.api_key,
        data=body if body is not None else orjson.dumps(ev),
        headers={"Content-Type": "application/json", "X-Ratchet-Signature": sig,
                 "X-Ratchet-Timestamp": str(stamp)})
    return status, answer


# --- attacks -----------------------------------------------------------------------------------

Attack = Callable[[Ctx], Awaitable[list[Row]]]


async def parser_errors(ctx: Ctx) -> list[Row]:
    """Requests aiohttp's parser refuses before any handler runs."""
    key = ctx.a.api_key
    cases = [
        ("bad request line", head(ctx, "GET", f"/{MARK} HTTP/9.9 extra") + b"\r\n"),
        ("control char in header", head(ctx, "GET", "/v1/whoami", f"X-{MARK}\x01: 1\r\n",
                                        key=key) + b"\r\n"),
        ("oversized header line", head(ctx, "GET", "/v1/whoami",
                                       f"X-Big: {MARK}{'a' * 9000}\r\n", key=key) + b"\r\n"),
        ("header flood (300 headers)", head(ctx, "GET", "/v1/whoami", "".join(
            f"X-{MARK}-{i}: {i}\r\n" for i in range(300)), key=key) + b"\r\n"),
        ("bad chunked encoding", head(ctx, "POST", "/v1/events",
                                      "Transfer-Encoding: chunked\r\n", key=key)
         + f"\r\nzz{MARK}\r\n".encode()),
        ("bad method", f"G{MARK}\x00T / HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1")),
    ]
    rows = []
    for name, data in cases:
        status, headers, body = await raw(ctx, data)
        seen = describe(status, headers, body)
        ok = 400 <= status < 500 and json_error_shape(headers, body) and MARK.encode() not in body
        rows.append(Row(f"parser: {name}", "4xx JSON error, nothing echoed", seen, ok))
    return rows


async def _count_open(writers: list[asyncio.StreamWriter],
                      readers: list[asyncio.StreamReader]) -> int:
    """How many of these connections the server has not closed."""
    open_ = 0
    for reader, writer in zip(readers, writers, strict=True):
        if writer.is_closing():
            continue
        try:
            got = await asyncio.wait_for(reader.read(65536), 0.01)
        except TimeoutError:
            open_ += 1  # nothing to read and not at EOF: still open
            continue
        except ConnectionError:
            continue
        if got and not reader.at_eof():
            # an answer arrived (e.g. 408/503); open unless EOF follows
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                more = await asyncio.wait_for(reader.read(65536), 0.05)
                if not more:
                    continue
            open_ += 1
    return open_


async def connection_holding(ctx: Ctx) -> list[Row]:
    """Slowloris heads, slow bodies and idle connections, all at once, then count survivors
    after the gateway's timeouts."""
    n_slow = 30 if ctx.quick else 100
    n_idle = 400 if ctx.quick else 1200
    head_limit = getattr(DEFAULTS, "gateway_head_timeout_s", 3630.0)
    body_limit = getattr(DEFAULTS, "gateway_body_timeout_s", 3630.0)
    # aiohttp reads (and drops) what is left of a refused body for up to 10 s before closing
    wait_s = min(max(head_limit, body_limit) + LINGER_S + 3, 50.0)
    loris: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    bodies: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    refused = 0
    try:
        for _ in range(n_slow):
            r, w = await asyncio.open_connection(ctx.host, ctx.port)
            w.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            loris.append((r, w))
            r, w = await asyncio.open_connection(ctx.host, ctx.port)
            w.write(head(ctx, "POST", "/v1/events", "Content-Type: application/json\r\n"
                         "Content-Length: 4000\r\n", key=ctx.a.api_key) + b"\r\n{")
            bodies.append((r, w))
        for _ in range(n_idle):
            try:
                r, w = await asyncio.open_connection(ctx.host, ctx.port)
            except OSError:
                refused += 1
                continue
            idle.append((r, w))
        await asyncio.sleep(0.5)
        idle_open_at_start = await _count_open([w for _, w in idle], [r for r, _ in idle])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:  # trickle: one byte per second on each
            for _, w in loris:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    if not w.is_closing():
                        w.write(b"X")
            for _, w in bodies:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    if not w.is_closing():
                        w.write(b" ")
            await asyncio.sleep(1.0)
        loris_open = await _count_open([w for _, w in loris], [r for r, _ in loris])
        bodies_open = await _count_open([w for _, w in bodies], [r for r, _ in bodies])
        idle_open = await _count_open([w for _, w in idle], [r for r, _ in idle])
        # one slow body's answer, for its shape
        slow_status = "-"
        r, w = await asyncio.open_connection(ctx.host, ctx.port)
        w.write(head(ctx, "POST", "/v1/events", "Content-Type: application/json\r\n"
                     "Content-Length: 100\r\n", key=ctx.a.api_key) + b"\r\n{")
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            got = await asyncio.wait_for(r.read(), min(body_limit + LINGER_S + 3, 50.0))
            status, headers, body = parse_answer(got)
            slow_status = describe(status, headers, body)
        w.close()
    finally:
        for _, w in loris + bodies + idle:
            w.close()
    cap = getattr(DEFAULTS, "gateway_max_connections_per_ip", 0)
    return [
        Row(f"slowloris head ({n_slow} conns, 1 B/s)",
            f"closed within head timeout ({head_limit:g} s)",
            f"{loris_open}/{n_slow} open after {wait_s:.0f} s", loris_open == 0),
        Row(f"slow body ({n_slow} conns, 1 B/s)",
            f"closed within body timeout ({body_limit:g} s), 408 JSON",
            f"{bodies_open}/{n_slow} open after {wait_s:.0f} s; one: {slow_status}",
            bodies_open == 0 and slow_status.startswith("408 json")),
        Row(f"idle connections ({n_idle} from one address)",
            f"≤ {cap} held per address, closed after head timeout",
            f"{idle_open_at_start} held at first, {idle_open} after {wait_s:.0f} s"
            + (f", {refused} refused" if refused else ""),
            idle_open == 0 and (cap == 0 or idle_open_at_start <= cap)),
    ]


async def oversized_and_nested(ctx: Ctx) -> list[Row]:
    rows = []
    status, headers, body = await raw(ctx, head(
        ctx, "POST", "/v1/events", "Content-Type: application/json\r\n"
        "Content-Length: 100000000\r\n", key=ctx.a.api_key) + b"\r\n{")
    rows.append(Row("declared 100 MB body", "413 JSON", describe(status, headers, body),
                    status == 413 and json_error_shape(headers, body)))
    chunk = b"a" * 65536
    stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(80)) + b"0\r\n\r\n"
    status, headers, body = await raw(ctx, head(
        ctx, "POST", "/v1/events", "Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n", key=ctx.a.api_key) + b"\r\n" + stream)
    rows.append(Row("chunked 5 MB body (no length)", "413 JSON", describe(status, headers, body),
                    status == 413 and json_error_shape(headers, body)))
    for name, data in [("nesting 100,000 deep", b'{"a":' * 100_000),
                       ("payload nesting 500 deep", orjson.dumps(
                           {"agent_id": ctx.a.agent_id, **event()})[:-2]
                        + b',"x":' + b"[" * 500 + b"]" * 500 + b"}}")]:
        status, answer = await signed_post(ctx, event(), body=data)
        rows.append(Row(name, "400 naming the problem", f"{status} {_msg(answer)}",
                        status == 400))
    # one signed event whose payload is one array of 1.9M numbers (3.8 MB, under the body
    # limit): only object keys were capped, and its walk, canonical form and skeleton stalled
    # the shared worker for seconds (Dec 4 black-box run, round 3)
    wide = event(run_id="array", payload={"q": [0] * 1_900_000})
    start = time.monotonic()
    status, answer = await signed_post(ctx, wide)
    rows.append(Row("payload of one 1.9M-element array", "400 naming the value cap",
                    f"{status} {_msg(answer)} in {time.monotonic() - start:.2f} s",
                    status == 400 and "values" in _msg(answer)))
    return rows


def _msg(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("message", ""))[:48]
    return str(answer)[:48]


async def hostile_json(ctx: Ctx) -> list[Row]:
    rows = []
    ev = event(agent_id=ctx.a.agent_id)
    ev["payload"] = ev.pop("payload")  # last: the cases below add a key inside it
    base = orjson.dumps(ev)[:-2]
    cases = [
        ("invalid UTF-8", base + b',"x":"\xff\xfe"}}'),
        ("lone surrogate escape", base + b',"x":"\\ud800"}}'),
        ("number 1e999", base + b',"x":1e999}}'),
        ("NaN literal", base + b',"x":NaN}}'),
        ("integer 2**64", base + b',"x":18446744073709551616}}'),
    ]
    for name, data in cases:
        status, answer = await signed_post(ctx, event(), body=data)
        rows.append(Row(name, "400 naming the problem", f"{status} {_msg(answer)}",
                        status == 400))
    # duplicate keys: refused before the signature is looked at (a reader keeping the first
    # value would see another event than the one scored)
    ev = event()
    full = {"agent_id": ctx.a.agent_id, **ev}
    stamp = int(time.time())
    sig = sign(ctx.a.agent_secret, ctx.a.project_id, full, stamp)
    dup = orjson.dumps(full)[:-1] + b',"action":"users.delete"}'
    status, answer, _ = await call(ctx, "POST", "/v1/events", ctx.a.api_key, data=dup, headers={
        "Content-Type": "application/json", "X-Ratchet-Signature": sig,
        "X-Ratchet-Timestamp": str(stamp)})
    rows.append(Row("duplicate key in the body", "400 naming the key",
                    f"{status} {_msg(answer)}",
                    status == 400 and "'action' appears twice" in _msg(answer)))
    return rows


async def signatures(ctx: Ctx) -> list[Row]:
    rows = []
    ev = event()
    full = {"agent_id": ctx.a.agent_id, **ev}
    stamp = int(time.time())
    sig = sign(ctx.a.agent_secret, ctx.a.project_id, full, stamp)
    hdrs = {"Content-Type": "application/json", "X-Ratchet-Signature": sig,
            "X-Ratchet-Timestamp": str(stamp)}
    first = await call(ctx, "POST", "/v1/events?wait_ms=3000", ctx.a.api_key,
                       data=orjson.dumps(full), headers=hdrs)
    again = await call(ctx, "POST", "/v1/events?wait_ms=3000", ctx.a.api_key,
                       data=orjson.dumps(full), headers=hdrs)
    def judged(answer: Any) -> Any:
        verdict = answer.get("verdict") if isinstance(answer, dict) else None
        return verdict and {k: verdict.get(k) for k in ("action", "score", "reasons", "edge")}

    same = judged(first[1]) is not None and judged(first[1]) == judged(again[1])
    rows.append(Row("replayed signed event (same bytes)", "the first verdict again, not "
                    "re-scored", f"{first[0]}/{again[0]}, same verdict: {same}",
                    first[0] == 200 and again[0] == 200 and same))
    status, answer = await signed_post(ctx, {**ev, "action": "users.delete"})
    rows.append(Row("same event id, other content", "409 naming event_id",
                    f"{status} {answer.get('field') if isinstance(answer, dict) else ''}",
                    status == 409))
    for name, ts in [("timestamp 1 day old", int(time.time()) - 86_400),
                     ("timestamp 1 day ahead", int(time.time()) + 86_400),
                     ("timestamp 2**40", 2**40), ("timestamp -1", -1)]:
        status, answer = await signed_post(ctx, event(), ts=ts)
        rows.append(Row(name, "401 stale, or 400 naming X-Ratchet-Timestamp",
                        f"{status} {_msg(answer)}", status == 401 or (
                            status == 400 and isinstance(answer, dict)
                            and answer.get("field") == "X-Ratchet-Timestamp")))
    return rows


async def cross_tenant(ctx: Ctx) -> list[Row]:
    rows = []
    # idempotency key collision: the same key in A and B never meets
    idem = "shared-key-" + uuid.uuid4().hex[:6]
    a_answer = await ctx.client_a.send(event(), idempotency_key=idem)
    b_ev = event()
    b_answer = await ctx.client_b.send(b_ev, idempotency_key=idem)
    b_ok = (b_answer.status == 202 and isinstance(b_answer.body, dict)
            and b_answer.body.get("event_id") == b_ev["event_id"]
            and "Idempotent-Replayed" not in b_answer.headers)
    rows.append(Row("Idempotency-Key reused across tenants", "B's own answer (no replay of A's)",
                    f"A {a_answer.status}, B {b_answer.status} own={b_ok}", b_ok))
    # enumeration: A asks for B's verdicts and approvals
    status, _, _ = await call(ctx, "GET", f"/v1/verdicts/{ctx.b_paused_id}", ctx.a.api_key)
    listing = await ctx.client_a.approvals()
    leaked = ctx.b_paused_id in json.dumps(listing.body)
    rows.append(Row("read B's verdict / approvals by id", "404, B's ids never listed",
                    f"{status}, listed: {leaked}", status == 404 and not leaked))
    status, _, _ = await call(ctx, "POST", f"/v1/approvals/{ctx.b_paused_id}", ctx.a.api_key,
                              json={"decision": "approve", "reason": "mine"})
    after = await ctx.client_b.verdict(ctx.b_paused_id)
    still = isinstance(after.body, dict) and after.body.get("approval") is None
    rows.append(Row("approve B's held event", "404, B's event still held",
                    f"{status}, still held: {still}", status == 404 and still))
    return rows


async def webhook_ssrf(ctx: Ctx) -> list[Row]:
    urls = ["http://127.0.0.1/", "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::7f00:1]/", "http://2130706433/",
            "http://0177.0.0.1/", "http://0x7f.1/", "http://localhost./",
            "http://a@127.0.0.1/", "http://10.0.0.1:6379/", "gopher://127.0.0.1:6379/_",
            "http://[fe80::1%25eth0]/"]
    statuses = []
    for url in urls:
        status, _, _ = await call(ctx, "POST", "/v1/webhooks", ctx.a.api_key,
                                  json={"url": url, "actions": ["reject"]})
        statuses.append(status)
    bad = [u for u, s in zip(urls, statuses, strict=True) if s != 400]
    return [Row(f"webhook SSRF ({len(urls)} internal URL forms)", "400 for every one",
                f"{statuses.count(400)}/{len(urls)} refused" + (f"; not: {bad}" if bad else ""),
                not bad)]


SLOW_POLICY = """
[[guardrails.pattern.rules]]
id = "nested"
regex = '(a+)+$'
action = "reject"
[[guardrails.pattern.rules]]
id = "alt"
regex = '(x+x+)+y'
action = "reject"
"""


async def slow_regex(ctx: Ctx) -> list[Row]:
    put = await ctx.client_a.put_policy(SLOW_POLICY)
    backref = await ctx.client_a.put_policy(
        '[[guardrails.pattern.rules]]\nid = "b"\nregex = \'(a)\\1\'\naction = "reject"\n')
    await asyncio.sleep(DEFAULTS.policy_refresh_s + 0.5)
    start = time.monotonic()
    answer = await ctx.client_a.send(event(payload={"q": "a" * 30_000 + "!", "r": "x" * 5000}),
                                     wait_ms=5000)
    took = time.monotonic() - start
    decided = answer.status == 200
    await ctx.client_a.put_policy("")
    return [Row("backtracking regexes (a+)+$, (x+x+)+y", "stored (RE2), event decided < 5 s",
                f"PUT {put.status}, verdict {answer.status} in {took * 1000:.0f} ms",
                put.status == 200 and decided),
            Row("backreference regex (a)\\1", "400 naming the rule",
                f"{backref.status} {backref.body.get('field') if isinstance(backref.body, dict) else ''}",
                backref.status == 400)]


async def keyspace(ctx: Ctx) -> list[Row]:
    """Distinct chains, runs and event ids from A: Redis memory per event, and the caps."""
    n = 2000 if ctx.quick else 5000
    before = int((await ctx.redis.info("memory"))["used_memory"])
    keys_before = await ctx.redis.dbsize()
    batch = 250
    accepted = 0
    over_cap = 0
    for start in range(0, n, batch):
        evs = [event(service=f"svc-{uuid.uuid4().hex[:10]}", run_id=uuid.uuid4().hex,
                     payload={uuid.uuid4().hex[:8]: 1}) for _ in range(min(batch, n - start))]
        answer = await ctx.client_a.send_batch(evs)
        if answer.status == 200:
            accepted += int(answer.body["accepted"])
            over_cap += sum(1 for r in answer.body["results"] if r["status"] == "rejected"
                            and r["error"]["field"] == "service")
    await asyncio.sleep(8)
    after = int((await ctx.redis.info("memory"))["used_memory"])
    keys_after = await ctx.redis.dbsize()
    per = (after - before) / max(1, accepted)
    chains = (await ctx.redis.zcard(ctx.keys.project_chains(ctx.a.project_id))
              if hasattr(ctx.keys, "project_chains") else -1)  # -1: a version without the cap
    agents = 0
    refused = 0
    for _ in range(CHAIN_AND_AGENT_CAPS["max_agents_per_project"] + 20):
        status, _, _ = await call(ctx, "POST", "/v1/agents", ctx.a.api_key, json={})
        agents += status == 201
        refused += status == 409
    listed = await ctx.redis.scard(ctx.keys.agents(ctx.a.project_id))
    chain_cap = CHAIN_AND_AGENT_CAPS["max_chains_per_project"]
    agent_cap = CHAIN_AND_AGENT_CAPS["max_agents_per_project"]
    return [Row(f"{n} distinct chains/runs/ids (chain cap {chain_cap})",
                "chains stop at the cap (422 naming service), memory per event measured",
                f"{accepted} accepted, {over_cap} × 422, {chains} chains kept, "
                f"+{keys_after - keys_before} keys, {per:.0f} B per accepted event",
                chains <= chain_cap and accepted + over_cap == n and over_cap > 0),
            Row(f"agent registration flood (agent cap {agent_cap})", "409 at the cap",
                f"{agents} created, {refused} × 409, {listed} agents kept",
                listed == agent_cap and refused > 0)]


async def heavy_events(ctx: Ctx) -> list[Row]:
    """A sends events as large and as wide as the limits allow; B shares the worker. Each takes
    ≈ 7,000 tokens (one per 512 characters: models/ratelimit.py event_tokens), more than a
    `standard` bucket: sent alone one drains the bucket, the rest are refused until it refills."""
    n = 8 if ctx.quick else 24
    wide = {f"k{i}": "x" * 700 for i in range(4990)}  # ~3.6 MB, just under the body limit
    start = time.monotonic()
    answers = await asyncio.gather(*(ctx.client_a.send(event(run_id=f"heavy-{i}",
                                                              payload=wide), wait_ms=5000)
                                     for i in range(n)))
    took = time.monotonic() - start
    decided = sum(1 for a in answers if a.status == 200)
    accepted = sum(a.status in (200, 202) for a in answers)
    limited = sum(a.status == 429 for a in answers)
    rows = [Row(f"{n} events of 3.6 MB / 4,990 keys",
                "all answered (accepted or 429: they exceed the bucket); B not stalled",
                f"{decided}/{n} decided within 5 s, {accepted} accepted, {limited} × 429, "
                f"{took:.1f} s", accepted + limited == n)]
    return (rows + await wide_events(ctx) + await expanding_text(ctx)
            + await scan_heavy_text(ctx))


async def scan_heavy_text(ctx: Ctx) -> list[Row]:
    """A sends events of 60 strings of 63,000 card-like characters (each under the PII scan
    limit): 0.15–0.45 s of worker CPU each for validating thousands of card numbers, and 1–2
    tokens, so 200 of them put B's p99 at 5.5 s (Dec 4 attack run, round 8). Text now takes a
    token per 512 characters (7,383 for such an event): the bucket lets one through per refill."""
    n = 20 if ctx.quick else 60
    text = ("4111 1111 1111 1111 " * 3_150)[:63_000]
    payload = {f"s{j:02}": text for j in range(60)}
    tokens = tokens_of(payload)
    statuses, took = await flood(ctx, n, 8, "scan", lambda i: payload)
    accepted = sum(1 for s in statuses if s in (200, 202))
    limited = statuses.count(429)
    return [Row(f"{n} events of 60 × 63,000 card-like characters ({tokens:,} tokens each)",
                f"the bucket refuses most (429); B still decided within {B_DEADLINE_S:g} s",
                f"{accepted} accepted, {limited} × 429, other "
                f"{sorted(set(statuses) - {200, 202, 429})}, {took:.1f} s",
                limited >= n // 2 and accepted + limited == n)]


async def expanding_text(ctx: Ctx) -> list[Row]:
    """A sends events of one 1.8 MB string of U+FDFA, which NFKC expands 18 times: one token
    each, and the guardrails' folding took ≈ 0.6 s per event, B past 5 s (Dec 4 attack run,
    round 7). Folding is now bounded per payload (models/guardrails/paths.py FOLD_BUDGET), and
    an event takes a token per 512 characters (1,172 each): most are refused (429)."""
    n = 16 if ctx.quick else 32
    statuses: list[int] = []
    start = time.monotonic()
    for i in range(n):
        answer = await ctx.client_a.send(event(run_id=f"nfkc-{i}",
                                               payload={"note": "\ufdfa" * 600_000}))
        statuses.append(answer.status)
    took = time.monotonic() - start
    await asyncio.sleep(6)  # what was accepted is decided while B keeps probing
    accepted = sum(1 for s in statuses if s in (200, 202))
    return [Row(f"{n} events of 600,000 × U+FDFA (NFKC: 18 characters each)",
                f"accepted or 429; B still decided within {B_DEADLINE_S:g} s",
                f"{accepted} accepted, statuses {sorted(set(statuses))}, {took:.1f} s",
                accepted + statuses.count(429) == n)]


async def wide_events(ctx: Ctx) -> list[Row]:
    """A sends events of 5,000 distinct keys (strings) as fast as it can, each well under every
    input limit: ≈ 19.5 ms of worker CPU each, ≈ 150 ordinary events. At one token per 1,000
    values (6 each) 432 of them in ≈ 5 s fit a 6,000/min bucket and put the worker 18.7 s
    behind (Dec 4 attack run); at one per 64 values, per 64 keys and per 512 characters (≈ 340
    each) the bucket holds ≈ 17 of them and refuses the rest."""
    n = 216 if ctx.quick else 432

    def wide(i: int) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:6]
        return {f"{tag}k{j}": "v" * 8 for j in range(5_000)}

    tokens = tokens_of(wide(0))
    statuses, took = await flood(ctx, n, 16, "wide", wide)
    accepted = sum(1 for s in statuses if s in (200, 202))
    limited = statuses.count(429)
    return [Row(f"{n} events of 5,000 distinct keys inside the rate limit ({tokens} tokens "
                "each)", f"the bucket refuses most (429); B still decided within "
                f"{B_DEADLINE_S:g} s",
                f"{accepted} accepted, {limited} × 429, other {sorted(set(statuses) - {200, 202, 429})}"
                f", {took:.1f} s", limited > 0 and accepted + limited == n)]


async def held_requests(ctx: Ctx) -> list[Row]:
    """Many long polls and decision streams at once: Redis connections and B's latency."""
    n = 150 if ctx.quick else 600
    clients_before = int((await ctx.redis.info("clients"))["connected_clients"])
    conn = aiohttp.TCPConnector(limit=0)
    statuses: list[int] = []
    errors: list[str] = []
    peak = clients_before
    async with aiohttp.ClientSession(connector=conn) as http:
        async def poll(i: int) -> None:
            path = (f"/v1/verdicts/none-{i}?wait_ms=5000" if i % 2
                    else "/v1/decisions:stream?timeout_s=6")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(ctx.url + path, headers={
                        "Authorization": f"Bearer {ctx.a.api_key}"}) as resp:
                    statuses.append(resp.status)
                    body = await asyncio.wait_for(resp.read(), 10)
                    if resp.status >= 500:
                        errors.append(body.decode(errors="replace")[:120])

        tasks = [asyncio.create_task(poll(i)) for i in range(n)]
        for _ in range(8):
            await asyncio.sleep(0.5)
            peak = max(peak, int((await ctx.redis.info("clients"))["connected_clients"]))
        await asyncio.gather(*tasks)
    grown = peak - clients_before
    return [Row(f"{n} held long polls / decision streams", "no 5xx; Redis connections stay "
                "within the gateway's pool",
                f"+{grown} Redis clients at peak; statuses {sorted(set(statuses))}"
                + (f"; {len(errors)} × 5xx: {errors[0]}" if errors else ""),
                grown <= getattr(DEFAULTS, "redis_max_connections", 100) + 8 and not errors)]


async def burst(ctx: Ctx) -> list[Row]:
    """Hundreds of requests in flight at once from A (each costs Redis round trips)."""
    n = 200 if ctx.quick else 250
    conn = aiohttp.TCPConnector(limit=0)
    statuses: list[int] = []
    async with aiohttp.ClientSession(connector=conn) as http:
        async def one(i: int) -> None:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(ctx.url + f"/v1/verdicts/burst-{i}", headers={
                        "Authorization": f"Bearer {ctx.a.api_key}"}) as resp:
                    statuses.append(resp.status)
                    await resp.read()

        for _ in range(3 if ctx.quick else 10):
            await asyncio.gather(*(one(i) for i in range(n)))
    errors = sum(1 for s in statuses if s >= 500)
    return [Row(f"burst: {n} requests in flight at once", "A's all answered (404), no 5xx",
                f"{len(statuses)} answered, {errors} × 5xx, statuses {sorted(set(statuses))}",
                errors == 0)]


async def hot_partition(ctx: Ctx) -> list[Row]:
    """A fills its whole rate-limit bucket as fast as it can; B shares the worker."""
    n = 3000 if ctx.quick else 6000
    sent = 0
    start = time.monotonic()
    batches = []
    for i in range(0, n, 500):
        batches.append(ctx.client_a.send_batch([event(run_id=f"flood-{i // 50}",
                                                      payload={"n": j}) for j in range(500)]))
    answers = await asyncio.gather(*batches)
    for answer in answers:
        if answer.status == 200:
            sent += int(answer.body["accepted"])
    await asyncio.sleep(6)
    return [Row(f"hot partition: A floods {n} events", "B still decided within "
                f"{B_DEADLINE_S:g} s", f"{sent} accepted in {time.monotonic() - start:.1f} s",
                sent > 0)]


async def spread_flood(ctx: Ctx) -> list[Row]:
    """Round 15 (R1): batches spread over many agents — one envelope each — sent without
    waiting for ``Retry-After``. The spread bucket (5 s of the tier's rate for envelope tokens)
    admits a few; each refused one still pays its events' tokens, so the flood drains its own
    ingest bucket and ends refused unread; B shares the worker throughout."""
    agents = 30
    project, key, secret = await provision(ctx.a.redis_url, ctx.a.key_prefix, "a3-bot")
    clients = [RatchetClient(ctx.url, key, "a3-bot", secret, project_id=project,
                             session=ctx.http)]
    for i in range(1, agents):
        _, agent_secret = await create_agent(ctx.redis, ctx.keys, project, f"a3-bot-{i}")
        clients.append(RatchetClient(ctx.url, key, f"a3-bot-{i}", agent_secret,
                                     project_id=project, session=ctx.http))
    n = 300 if ctx.quick else 900
    statuses: dict[int, int] = {}
    gate = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        items = [c.signed(event(run_id=f"spread-{i}", payload={"n": i})) for c in clients]
        async with gate:
            answer = await clients[0].post_signed(items)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1

    start = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n)))
    took = time.monotonic() - start
    envelope = (agents - 1) * 4  # models/ratelimit.py AGENT_ENVELOPE_TOKENS
    burst = math.ceil(int(TIERS.split(":")[1]) * 5 / 60)  # the spread bucket (SPREAD_BURST_S)
    most = burst // envelope + math.ceil(took * int(TIERS.split(":")[1]) * 0.8 / 60
                                         / envelope) + 1
    await asyncio.sleep(3)  # what was accepted is decided while B keeps probing
    return [Row(f"{n} batches of {agents} agents' events (one envelope each), 10 at a time, "
                "Retry-After ignored",
                f"at most the spread bucket's share ({most}) accepted, the rest 429; B decided "
                f"within {B_DEADLINE_S:g} s",
                f"statuses {dict(sorted(statuses.items()))} in {took:.1f} s",
                set(statuses) <= {200, 429} and 0 < statuses.get(200, 0) <= most)]


async def run_flood(ctx: Ctx) -> list[Row]:
    """A widens its engine override as far as it can and floods one-event runs of new shapes:
    many checkpoints of a big chain, and many runs in one agent's batch (the outside attack
    run of Dec 4 held Redis for 16-50 s with caps of 1e9, ~0.3-2.9 s without)."""
    unbounded = await ctx.client_a.put_engine_override(
        {"node_cap": 1_000_000_000, "edge_cap": 1_000_000_000, "checkpoint_runs": 1})
    widest = await ctx.client_a.put_engine_override({"checkpoint_runs": 5})
    await ctx.redis.config_set("slowlog-log-slower-than", 20_000)
    await ctx.redis.slowlog_reset()
    n = 3000 if ctx.quick else 6000
    accepted = 0
    for lo in range(0, n, 1000):
        evs = [event(run_id=f"rf-{lo + i}-{uuid.uuid4().hex[:6]}", end_of_run=True,
                     payload={f"k{lo + i}": 1, f"j{lo + i}": {"z": True}}) for i in range(1000)]
        answer = None
        for _ in range(4):  # the rows before may have drained A's bucket: wait for it, as a
            try:  # client honouring Retry-After would
                answer = await ctx.client_a.send_batch(evs)
            except aiohttp.ClientError:
                # a body over 64 KB refused (429) before it is read ends its connection: the
                # client may see that instead of the answer while it still sends (a retrying
                # client sends again, as here)
                await asyncio.sleep(5.0)
                continue
            if answer.status != 429:
                break
            await asyncio.sleep(min(float(answer.headers.get("Retry-After", "10")), 20.0))
        if answer is not None and answer.status == 200:
            accepted += int(answer.body["accepted"])
    await asyncio.sleep(8)
    longest = max((int(e["duration"]) for e in await ctx.redis.slowlog_get(1000)), default=0)
    await ctx.client_a.delete_engine_override()
    return [Row("engine override with caps of 1e9 and checkpoint_runs 1", "400, nothing stored",
                f"{unbounded.status}", unbounded.status == 400),
            Row(f"{n} one-event runs of new shapes (checkpoint_runs 5)",
                "B decided within the deadline; no Redis command over 100 ms",
                f"{accepted} accepted; override {widest.status}; longest Redis command "
                f"{longest / 1000:.0f} ms", accepted > 0 and longest < 100_000)]


#: A fixed workflow over three services that the evasion attack's agent learns first.
WORKFLOW: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("crm", "contacts.search", {"query": "acme"}), ("crm", "contacts.read", {"id": 7}),
    ("billing", "invoices.list", {"customer": 7}), ("billing", "invoices.read", {"id": 3}),
    ("mail", "messages.draft", {"to": "a@example.com", "body": "hi"}),
    ("mail", "messages.send", {"draft_id": 1}),
)


async def evasion(ctx: Ctx) -> list[Row]:
    """A compromised agent that knows how Ratchet works, on services locked on a fixed workflow
    (the stack's locking engine), tries to get clearly anomalous calls allowed: each trick
    allowed one in the Dec 4 black-box run (round 3)."""
    agent = f"a-evasion-{uuid.uuid4().hex[:6]}"
    _, secret = await create_agent(ctx.redis, ctx.keys, ctx.a.project_id, agent)
    client = RatchetClient(ctx.url, ctx.a.api_key, agent, secret,
                           project_id=ctx.a.project_id, session=ctx.http)

    async def verdict(ev: dict[str, Any]) -> str:
        got = await client.send(ev, wait_ms=5000)
        body = got.body if isinstance(got.body, dict) else {}
        v = body.get("verdict") or {}
        return f"{v.get('action', got.status)}"

    def run(run_id: str) -> list[dict[str, Any]]:
        return [event(run_id=run_id, service=s, action=a, payload=p,
                      end_of_run=i == len(WORKFLOW) - 1)
                for i, (s, a, p) in enumerate(WORKFLOW)]

    async def polls(run_id: str, n: int) -> str:
        """A run of ``n`` CI status polls (a repeat streak of n - 1): its strictest answer."""
        answers = [await verdict(event(run_id=run_id, service="ci", action="status.get",
                                       payload={"pipeline": 7}, end_of_run=i == n - 1))
                   for i in range(n)]
        return "pause" if "pause" in answers else "flag" if "flag" in answers else answers[-1]

    modes: set[str] = set()
    for r in range(12):
        await polls(f"ci-{r}", 3)  # learned beside the workflow (not a service new later)
        for ev in run(f"train-{r}"):
            got = await client.send(ev, wait_ms=5000)
            if r == 11 and isinstance(got.body, dict):
                modes.add(str((got.body.get("verdict") or {}).get("mode")))
    rows = [Row("evasion: baseline of 12 workflow runs", "every service locked",
                ", ".join(sorted(modes)), modes == {"locked"})]
    crit = await verdict(event(run_id="crit-0", service="crm", action="admin.drop_database",
                               payload={"sql": "DROP DATABASE crm"}, priority="critical"))
    rows.append(Row("evasion: a new call marked priority critical", "not allowed",
                    crit, crit in ("pause", "reject")))
    await verdict(event(run_id="act-0", service="crm", action="contacts.search",
                        payload={"query": "acme"}))
    same_shape = await verdict(event(run_id="act-0", service="crm", action="contacts.purge_all",
                                     payload={"id": 7}))
    rows.append(Row("evasion: a new action in a learned step's payload shape", "not allowed",
                    same_shape, same_shape in ("pause", "reject")))
    # round 4: a known action where it never came, in the shape of the step that comes there
    # (a send without its draft, to a recipient of the attacker's choosing)
    send_first = await verdict(event(run_id="send-0", service="mail", action="messages.send",
                                     payload={"to": "x@evil.test", "body": "data"}))
    rows.append(Row("evasion: a known action as a run's first call, in the first step's shape",
                    "not allowed", send_first, send_first in ("pause", "reject")))
    flood = [await verdict(event(run_id=f"up-{i}", service="pastebin", action="files.upload",
                                 payload={"name": "x", "data": "y"}, end_of_run=True))
             for i in range(12)]
    after = await verdict(event(run_id="up-x", service="pastebin", action="files.upload_all",
                                payload={"all": True}, end_of_run=True))
    rows.append(Row("evasion: 12 paused one-event runs to a new service, then a new shape",
                    "every one paused (paused runs give no footing)",
                    " ".join(a[0] for a in flood) + f" then {after}",
                    set(flood) == {"pause"} and after == "pause"))
    # round 5: a person approves one harmless call to a service new to the agent; the agent
    # repeats it until the chain leaves shadow on its own, then sends what it came for
    first = event(run_id="ap-0", service="notes", action="notes.append",
                  payload={"text": "hello"}, end_of_run=True)
    held = await verdict(first)
    approved = await client.decide(first["event_id"], "approve", "looks harmless")
    left = "shadow"
    for i in range(1, 12):
        got = await client.send(event(run_id=f"ap-{i}", service="notes", action="notes.append",
                                      payload={"text": "hello"}, end_of_run=True), wait_ms=5000)
        left = str(((got.body if isinstance(got.body, dict) else {}).get("verdict")
                    or {}).get("mode"))
        if left != "shadow":
            break
    then = await verdict(event(run_id="ap-x", service="notes", action="notes.export_all",
                               payload={"all": True, "to": "https://x.evil.test"},
                               end_of_run=True))
    rows.append(Row("evasion: one approved call to a new service, repeated until its chain "
                    "leaves shadow, then a new call", "the chain leaves shadow locked (the "
                    "agent's mode); the new call paused",
                    f"{held}, approval {approved.status}, left shadow {left}, then {then}",
                    held == "pause" and approved.status == 200 and left == "locked"
                    and then == "pause"))
    # round 6: on a locked chain each streak within the repeat limit raised it by half again
    # (2, 3, 5, 9 ... 132 repeats allowed); the limit now stays where the chain locked
    ladder = [(n, await polls(f"ci-up-{n}", n)) for n in (4, 5, 6, 9)]
    rows.append(Row("evasion: runs of 4, 5, 6, 9 polls on a chain locked on runs of 3",
                    "the repeat limit stays where it locked: 4-6 allowed, 9 paused",
                    " ".join(f"{n}:{a}" for n, a in ladder),
                    [a for _, a in ladder] == ["allow", "allow", "allow", "pause"]))
    return rows


#: Rules linear on RE2 but slow on random a/b text (its DFA cannot settle): ≈ 100 ms of worker
#: time for a 500-character value with 40 of them (round 9).
SHARE_POLICY = "".join(
    f'[[guardrails.pattern.rules]]\nid = "slow-{i}"\nregex = "[ab]*a[ab]{{{900 + i}}}z"\n'
    for i in range(40))


async def shared_worker(ctx: Ctx) -> list[Row]:
    """Round 9 of the outside attack runs (Dec 5): ways one tenant held the gateway or the
    worker while every event or call stayed inside its limits."""
    rows: list[Row] = []
    # 1. a policy of slow rules: each one-token event ≈ 100 ms of worker time, 60 a second,
    # from two projects of A's (round 10: each at a share of its own took the whole worker)
    project, key, secret = await provision(ctx.a.redis_url, ctx.a.key_prefix, "a2-bot")
    second = RatchetClient(ctx.url, key, "a2-bot", secret, project_id=project, session=ctx.http)
    clients = [ctx.client_a, second]
    puts = [(await c.put_policy(SHARE_POLICY)).status for c in clients]
    await asyncio.sleep(DEFAULTS.policy_refresh_s + 0.5)
    rng = random.Random(9)
    events = 120 if ctx.quick else 600
    sent: dict[int, int] = {}
    tasks = []
    for i in range(events):
        ev = event(run_id=f"share-{i}", payload={"q": "".join(rng.choices("ab", k=500))})
        tasks.append(asyncio.create_task(clients[i % 2].send(ev)))
        await asyncio.sleep(1 / 60)
    for answer in await asyncio.gather(*tasks):
        sent[answer.status] = sent.get(answer.status, 0) + 1
    await asyncio.sleep(6)  # what was accepted is decided while B keeps probing
    for c in clients:
        await c.put_policy("")
    rows.append(Row(f"{events} events at 60/s from two projects, each under 40 slow rules "
                    "(≈ 100 ms an event)",
                    f"their scanning held to a share; B decided within {B_DEADLINE_S:g} s",
                    f"policy PUTs {puts}; statuses {dict(sorted(sent.items()))}",
                    puts == [200, 200] and set(sent) <= {200, 202, 429}))
    # 2. large bodies refused only after being read: 1,489 of 1,500 3.9 MB events, B at 9.8 s
    n = 100 if ctx.quick else 400
    text = "x" * 3_900_000
    gate = asyncio.Semaphore(50)
    sizes: dict[int, int] = {}

    async def large(i: int) -> None:
        async with gate:
            answer = await ctx.client_a.send(event(run_id=f"large-{i}", payload={"k": text}))
        sizes[answer.status] = sizes.get(answer.status, 0) + 1

    start = time.monotonic()
    await asyncio.gather(*(large(i) for i in range(n)))
    took = time.monotonic() - start
    rows.append(Row(f"{n} bodies of 3.9 MB, 50 at a time",
                    f"refused (429) before they are read; B decided within {B_DEADLINE_S:g} s",
                    f"statuses {dict(sorted(sizes.items()))} in {took:.1f} s",
                    sizes.get(429, 0) >= n - 10 and set(sizes) <= {200, 202, 429}))
    # 2b. compressed bodies (round 11): 4 KB of gzip inflating to 3.9 MB, parsed to be refused
    packed = gzip.compress(b'{"events": [' + b"{}," * 1_300_000 + b"{}]}")
    squeezed: dict[int, int] = {}

    async def compressed(path: str, key: str | None) -> None:
        async with gate:
            got, _, _ = await call(ctx, "POST", path, key, data=packed,
                                   headers={"Content-Encoding": "gzip",
                                            "Content-Type": "application/json"})
        squeezed[got] = squeezed.get(got, 0) + 1

    start = time.monotonic()
    await asyncio.gather(*(compressed("/v1/events:batch", ctx.a.api_key) for _ in range(n)),
                         *(compressed("/v1/signup", None) for _ in range(n // 4)))
    took = time.monotonic() - start
    rows.append(Row(f"{n + n // 4} gzip bodies of {len(packed):,} bytes inflating to 3.9 MB "
                    "(batches and anonymous signups), 50 at a time",
                    f"refused (415) before a byte is read; B decided within {B_DEADLINE_S:g} s",
                    f"statuses {dict(sorted(squeezed.items()))} in {took:.1f} s",
                    set(squeezed) == {415}))
    # 3. an agent's ingest key reading in a loop: it spent the admins' api bucket (round 10)
    status, made, _ = await call(ctx, "POST", "/v1/keys", ctx.a.api_key,
                                 json={"role": "ingest", "agent_id": ctx.a.agent_id})
    agent_key = made.get("api_key", "") if isinstance(made, dict) else ""
    reads: dict[int, int] = {}
    stop_reads = time.monotonic() + (3.0 if ctx.quick else 10.0)

    async def agent_reader() -> None:
        while time.monotonic() < stop_reads:
            got, _, _ = await call(ctx, "GET", "/v1/whoami", agent_key)
            reads[got] = reads.get(got, 0) + 1

    await asyncio.gather(*(agent_reader() for _ in range(10)))
    admin, _, _ = await call(ctx, "GET", "/v1/approvals?limit=10", ctx.a.api_key)
    rows.append(Row("an agent's ingest key reading in a loop, then its admin lists approvals",
                    "the agent's reads take its own (ingest) bucket; the admin is served",
                    f"key {status}; agent reads {dict(sorted(reads.items()))}; admin {admin}",
                    status == 201 and reads.get(429, 0) > 0 and admin == 200))
    # 4. reads (last: they leave the api bucket spent): unmetered, 20 readers of a large answer put B's p50 at 1.9 s
    big = "".join(f'[[guardrails.pattern.rules]]\nid = "r{i}"\nliteral = "{"x" * 300}{i}"\n'
                  for i in range(150))  # ≈ 50 KB stored, ≈ 100 KB read back
    put = await ctx.client_a.put_policy(big)
    seconds = 5.0 if ctx.quick else 15.0
    statuses: dict[int, int] = {}
    stop = time.monotonic() + seconds

    async def reader() -> None:
        while time.monotonic() < stop:
            status, _, _ = await call(ctx, "GET", "/v1/policy", ctx.a.api_key,
                                      headers={"Accept": "application/json"})
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(reader() for _ in range(20)))
    await ctx.client_a.put_policy("")
    rows.append(Row(f"20 readers of a 100 KB answer for {seconds:g} s (unmetered before)",
                    f"429 once the api bucket is spent; B decided within {B_DEADLINE_S:g} s",
                    f"policy PUT {put.status}; answers {dict(sorted(statuses.items()))}",
                    put.status == 200 and statuses.get(429, 0) > 0
                    and set(statuses) <= {200, 429}))
    return rows


ATTACKS: list[tuple[str, Attack]] = [
    ("parser", parser_errors), ("holding", connection_holding),
    ("oversized", oversized_and_nested), ("json", hostile_json), ("signatures", signatures),
    ("cross-tenant", cross_tenant), ("ssrf", webhook_ssrf), ("regex", slow_regex),
    # before "keyspace": it fills the project's chain and agent caps
    ("evasion", evasion),
    ("held", held_requests), ("burst", burst), ("keyspace", keyspace),
    ("heavy", heavy_events), ("hot", hot_partition), ("spread", spread_flood),
    ("runs", run_flood),
    ("shared", shared_worker),
]


HOLD_POLICY = """
[[guardrails.pattern.rules]]
id = "hold"
literal = "HOLD-ME"
action = "pause"
"""


async def _prepare_b(ctx: Ctx) -> None:
    """B stores a policy that holds one of its events, and sends that event."""
    answer = await ctx.client_b.put_policy(HOLD_POLICY)
    if answer.status != 200:
        raise RuntimeError(f"tenant B's policy was refused: {answer.body}")
    await asyncio.sleep(DEFAULTS.policy_refresh_s + 0.5)
    ev = event(payload={"note": "HOLD-ME"})
    got = await ctx.client_b.send(ev, wait_ms=5000)
    verdict = got.body.get("verdict") if isinstance(got.body, dict) else None
    if not verdict or verdict.get("action") != "pause":
        raise RuntimeError(f"tenant B's event was not held: {got.status} {got.body}")
    ctx.b_paused_id = ev["event_id"]


def _partition(project_id: str, agent_id: str) -> int:
    """The ingest partition of an agent's events (the producer's default partitioner)."""
    parts = list(range(STACK_PARTITIONS))
    return int(DefaultPartitioner()(agent_key(project_id, agent_id), parts, parts))


async def _b_agent_on_a_partition(creds: Credentials, b_project: str) -> tuple[str, str]:
    """An agent of B whose events share tenant A's agent's partition (head-of-line)."""
    target = _partition(creds.project_id, creds.agent_id)
    redis = Redis.from_url(creds.redis_url)
    try:
        agent = next(f"b-bot-{i}" for i in range(100) if _partition(b_project, f"b-bot-{i}")
                     == target)
        _, secret = await create_agent(redis, Keys(creds.key_prefix), b_project, agent)
    finally:
        await redis.aclose()
    return agent, secret


async def run(creds: Credentials, quick: bool, only: set[str] | None) -> list[Row]:
    parts = urlsplit(creds.url)
    b_project, b_key, _ = await provision(creds.redis_url, creds.key_prefix, "b-setup",
                                          TIERS.split(":", 1)[0])
    b_agent, b_secret = await _b_agent_on_a_partition(creds, b_project)
    redis = Redis.from_url(creds.redis_url)
    b_conn = aiohttp.TCPConnector(local_addr=(B_ADDRESS, 0), limit=100)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http, \
            aiohttp.ClientSession(connector=b_conn,
                                  timeout=aiohttp.ClientTimeout(total=30)) as b_http:
        client_a = RatchetClient(creds.url, creds.api_key, creds.agent_id, creds.agent_secret,
                                 project_id=creds.project_id, session=http)
        client_b = RatchetClient(creds.url, b_key, b_agent, b_secret, project_id=b_project,
                                 session=b_http)
        ctx = Ctx(creds.url, parts.hostname or "127.0.0.1", parts.port or 80, creds, b_key,
                  b_project, b_secret, b_agent, quick, http, client_a, client_b, redis,
                  Keys(creds.key_prefix))
        await _prepare_b(ctx)
        probe = Probe(client_b)
        probe.start()
        rows: list[Row] = []
        try:
            for name, attack in ATTACKS:
                if only and name not in only:
                    continue
                since = time.monotonic()
                try:
                    got = await attack(ctx)
                except Exception as exc:  # noqa: BLE001 - an attack that crashed the harness is a finding
                    got = [Row(name, "answers", f"harness error: {type(exc).__name__}: {exc}",
                               False)]
                await asyncio.sleep(1.0)
                p50, p99, probes, failed = probe.window(since, time.monotonic())
                for row in got:
                    row.b_p50_ms, row.b_p99_ms, row.b_probes, row.b_failed = p50, p99, probes, failed
                    print(_line(row), flush=True)
                rows.extend(got)
        finally:
            await probe.stop()
            await redis.aclose()
    return rows


def _line(row: Row) -> str:
    b = f"{row.b_p50_ms:6.0f} / {row.b_p99_ms:6.0f} ms ({row.b_probes - row.b_failed}/{row.b_probes})"
    return (f"| {row.attack} | {row.expected} | {row.observed} | {b} | "
            f"{'pass' if row.passed else 'FAIL'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer connections and events")
    parser.add_argument("--only", default="", help="comma-separated attack groups: "
                        + ",".join(n for n, _ in ATTACKS))
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)
    only = {s for s in args.only.split(",") if s} or None
    os.environ.setdefault("PYTHONPATH", os.getcwd())
    print("| attack | expected | observed | tenant B p50 / p99 (decided/probes) | result |")
    print("| --- | --- | --- | --- | --- |", flush=True)
    with RedisServer() as redis_server, TansuServer() as broker, \
            local_stack(redis_server.url, broker.bootstrap, tiers=TIERS,
                        **cast(dict[str, Any], CAPS_SET)) as creds:
        rows = asyncio.run(run(creds, args.quick, only))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} passed", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([{**asdict(r), "passed": r.passed} for r in rows], out, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
