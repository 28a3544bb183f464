"""The Python SDK (clients/python, ``ratchet_client``) against a real gateway and worker: batching,
typed verdicts, retries that never double-count, Retry-After, typed errors, and a guarded tool
call that blocks on a pause until a person approves or rejects it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from ratchet_client import (
    ActionRejected,
    AsyncClient,
    AuthError,
    Client,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
    Verdict,
    canonical,
    sign_event,
)

from models.envelope import decode_ingest
from ratchet.sandbox.servers import free_port
from ratchet.sandbox.stack import Credentials, provision

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
VECTORS = json.loads((Path(__file__).parents[2] / "docs" / "signature-vectors.json").read_text())


def _client(s: Credentials, **options: Any) -> Client:
    return Client(s.url, s.api_key, s.agent_id, s.agent_secret, **options)


class Recording(httpx.BaseTransport):
    """The real HTTP transport, recording every request and answer; ``lose`` drops the answer
    of the first request to a path after the gateway has handled it (a cut connection)."""

    def __init__(self, lose: str | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose = lose
        self.seen: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.seen.append((request, response))
        if self.lose and request.url.path == self.lose:
            self.lose = None
            raise httpx.ReadError("connection reset after the request was sent", request=request)
        return response

    def close(self) -> None:
        self.inner.close()

    def posts(self, path: str) -> list[tuple[httpx.Request, httpx.Response]]:
        return [(q, r) for q, r in self.seen if q.method == "POST" and q.url.path == path]


async def _ingested_ids(bootstrap: str, topic: str) -> list[str]:
    """Every event id on the stack's ingest topic, from the beginning to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        ids: list[str] = []
        deadline = time.monotonic() + 20
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the ingest topic to its end"
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for rec in records:
                    assert rec.value is not None
                    ids.extend(ev.event_id for ev in decode_ingest(rec.value).events)
        return ids
    finally:
        await consumer.stop()


def _fresh(s: Credentials, tier: str | None = None) -> Credentials:
    """A new project and agent on the same stack: no chain learned by another test."""
    agent = f"agent-{uuid.uuid4().hex[:6]}"
    project, api_key, secret = asyncio.run(provision(s.redis_url, s.key_prefix, agent, tier))
    return Credentials(s.url, api_key, project, agent, secret, s.redis_url, s.key_prefix,
                       s.topic_ingest)


@pytest.fixture
def fresh(sdk_stack: Credentials) -> Credentials:
    return _fresh(sdk_stack)


def _event(service: str, action: str = "read", **fields: Any) -> dict[str, Any]:
    return {"service": service, "action": action, "payload": {"id": 1}, **fields}


# --- signing (shared vectors) ------------------------------------------------------------------
@pytest.mark.parametrize("vector", VECTORS["canonical"], ids=lambda v: v["name"])
def test_sdk_canonical_vectors(vector: dict[str, str]) -> None:
    assert canonical(json.loads(vector["input"])) == vector["canonical"].encode("utf-8")


@pytest.mark.parametrize("vector", VECTORS["events"], ids=lambda v: v["name"])
def test_sdk_signature_vectors(vector: dict[str, Any]) -> None:
    event = json.loads(vector["event"])
    assert sign_event(vector["secret"], vector["project_id"], event, vector["timestamp"]) == \
        vector["signature"]


@pytest.mark.parametrize("vector", VECTORS["refused"], ids=lambda v: v["name"])
def test_sdk_refuses_unportable_numbers(vector: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        canonical(json.loads(vector["input"]))


# --- against the real gateway and worker -----------------------------------------------------
def test_send_many_batches_and_every_event_is_decided(sdk_stack: Credentials) -> None:
    rec = Recording()
    with _client(sdk_stack, batch_size=50, linger_ms=300, transport=rec) as rc:
        futures = rc.send_many([_event("batching", run_id=f"b{i // 3}") for i in range(120)])
        accepted = [f.result(timeout=30) for f in futures]
        assert len({a.event_id for a in accepted}) == 120
        sizes = [len(json.loads(q.content)["events"]) for q, _ in rec.posts("/v1/events:batch")]
        assert sizes == [50, 50, 20], sizes
        last = rc.wait_for_decision(accepted[-1].event_id, timeout_s=60)
        assert isinstance(last, Verdict) and last.event_id == accepted[-1].event_id
        assert last.action in ("allow", "flag", "pause", "reject")


def test_decide_returns_a_typed_verdict(fresh: Credentials) -> None:
    with _client(fresh) as rc:
        ev = _event("deciding", payload={"rate": 0.00005, "tiny": 1e-7, "\U0001F600": 1,
                                         "\uff61": 2, "zero": -0.0})
        verdict = rc.decide(ev, wait_ms=3000, timeout_s=60)
        # shadow mode never enforces; a guardrail may flag the odd keys
        assert verdict.action in ("allow", "flag") and verdict.mode == "shadow", verdict
        assert verdict.allowed and not verdict.paused and verdict.trace_id
        assert all(r.source for r in verdict.reasons)
        assert rc.verdict(verdict.event_id) == verdict  # GET /v1/verdicts agrees


def test_any_event_id_reaches_the_verdict_and_approval_routes(fresh: Credentials) -> None:
    """``verdict`` and ``resolve`` percent-encode the id as one path segment (``resolve`` sent
    it raw: ``a/b`` or ``x?y`` hit another route or lost its tail), dots included."""
    suffix = uuid.uuid4().hex[:6]
    with _client(fresh) as rc:
        for event_id in ("a{b}c" + suffix, "x/y" + suffix, "100%" + suffix, "q?r#s" + suffix,
                         "." + suffix, ".." + suffix):
            verdict = rc.decide(_event("ids", event_id=event_id), wait_ms=3000, timeout_s=60)
            assert verdict.event_id == event_id
            assert rc.verdict(event_id).event_id == event_id
            # not paused (shadow mode): the approvals route itself answers, naming the event
            with pytest.raises(NotFoundError) as missing:
                rc.resolve(event_id, "approve")
            assert f"event {event_id} is not paused" in str(missing.value), missing.value


def test_a_retried_request_is_counted_once(sdk_stack: Credentials, kafka_bootstrap: str) -> None:
    rec = Recording(lose="/v1/events")
    with _client(sdk_stack, backoff_s=0.05, transport=rec) as rc:
        first = rc.post(_event("retrying"))
        # the answer of the first attempt was lost: the SDK sent the same request again
        posts = rec.posts("/v1/events")
        assert len(posts) == 2
        (q1, r1), (q2, r2) = posts
        assert q1.headers["Idempotency-Key"] == q2.headers["Idempotency-Key"]
        assert q1.content == q2.content and r1.status_code == 202
        assert r2.headers.get("Idempotent-Replayed") == "true"
        rec.lose = "/v1/events:batch"
        futures = rc.send_many([_event("retrying") for _ in range(5)])
        batch_ids = [f.result(timeout=30).event_id for f in futures]
        assert len(rec.posts("/v1/events:batch")) == 2
    ids = asyncio.run(_ingested_ids(kafka_bootstrap, sdk_stack.topic_ingest))
    for event_id in [first.event_id, *batch_ids]:
        assert ids.count(event_id) == 1, event_id


def test_rate_limit_honours_retry_after(sdk_stack: Credentials) -> None:
    tiny = _fresh(sdk_stack, "tiny")
    with _client(tiny, max_retries=0) as rc:
        for f in rc.send_many([_event("limited") for _ in range(30)]):
            f.result(timeout=30)
        with pytest.raises(RateLimitedError) as caught:
            rc.post(_event("limited"))
        assert caught.value.status == 429 and caught.value.retry_after >= 1
    with _client(tiny, max_retries=3) as rc:
        started = time.monotonic()
        accepted = rc.post(_event("limited"))
        waited = time.monotonic() - started
        assert accepted.event_id and waited >= caught.value.retry_after * 0.9, waited


def test_errors_are_typed_and_name_the_field(sdk_stack: Credentials) -> None:
    with _client(sdk_stack) as rc:
        with pytest.raises(ValidationError) as bad:
            rc.post(_event("errors", priority="urgent"))
        assert bad.value.status == 400 and bad.value.field == "priority"
        (fut,) = rc.send_many([_event("errors", priority="urgent")])
        item_error = fut.exception(timeout=30)
        # named in the event, as post names it (not in the SDK's own batch: events[0].priority)
        assert isinstance(item_error, ValidationError) and item_error.field == "priority"
        with pytest.raises(ValidationError, match="portable") as unportable:
            rc.post(_event("errors", payload={"n": 2**53 + 1}))
        assert unportable.value.field == "payload.n"  # where it is, as the gateway names it
        # an unsignable event fails alone; the rest of its batch goes through
        bad_one, good_one = rc.send_many([_event("errors", payload={"n": 2**53 + 1}),
                                          _event("errors")])
        assert isinstance(bad_one.exception(timeout=30), ValidationError)
        assert good_one.result(timeout=30).event_id
        ev = _event("errors", event_id=str(uuid.uuid4()))
        rc.post(ev)
        with pytest.raises(ConflictError):
            rc.post({**ev, "payload": {"id": 2}})
    with Client(sdk_stack.url, sdk_stack.api_key, sdk_stack.agent_id, "as_wrong") as rc, \
            pytest.raises(AuthError, match="bad signature"):
        rc.post(_event("errors"))
    with Client(sdk_stack.url, "rk_wrong", sdk_stack.agent_id, "x") as rc, \
            pytest.raises(AuthError):
        rc.post(_event("errors"))
    with Client(f"http://127.0.0.1:{free_port()}", "rk", "a", "s", project_id="p",
                max_retries=2, backoff_s=0.01) as rc, pytest.raises(UnavailableError):
        rc.post(_event("errors"))


SHAPES = {"a": {"ticket": 1, "text": "x"}, "b": {"query": "refund", "limit": 5},
          "c": {"reply": "done", "close": True}}


def _train(rc: Client, service: str) -> None:
    """Teach ``service``'s chain 12 three-step runs so it locks and pauses novel calls."""
    events = [{"service": service, "action": f"step.{k}", "payload": SHAPES[k],
               "priority": "critical", "run_id": f"t{r}", "end_of_run": k == "c"}
              for r in range(12) for k in "abc"]
    futures = rc.send_many(events)
    last = [f.result(timeout=30) for f in futures][-1]
    rc.wait_for_decision(last.event_id, timeout_s=60)


@pytest.fixture
def paused_service(fresh: Credentials) -> Iterator[tuple[Client, str]]:
    service = f"warehouse-{uuid.uuid4().hex[:6]}"
    with _client(fresh) as rc:
        _train(rc, service)
        yield rc, service


def _resolve_when_paused(rc: Client, decision: str) -> threading.Thread:
    """A person, in another thread: decides the first paused event of the project."""
    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for v in rc.pending(agent_id=rc.config.agent_id):  # this agent's only
                assert v.raw["agent_id"] == rc.config.agent_id
                rc.resolve(v.event_id, decision, "checked by the test")
                return
            time.sleep(0.1)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_guard_blocks_on_pause_until_approved_or_rejected(
        paused_service: tuple[Client, str]) -> None:
    rc, service = paused_service
    calls: list[dict[str, Any]] = []

    @rc.guard(service, "step.novel", priority="critical", run_id="odd-1", timeout_s=60)
    def export(export: dict[str, Any]) -> str:
        calls.append(export)
        return "exported"

    approver = _resolve_when_paused(rc, "approve")
    assert export({"table": "customers", "all": True}) == "exported"
    approver.join()
    assert calls == [{"table": "customers", "all": True}]

    @rc.guard(service, "step.drop", priority="critical", run_id="odd-2", timeout_s=60)
    def drop(table: str) -> str:
        calls.append({"drop": table})
        return "dropped"

    rejecter = _resolve_when_paused(rc, "reject")
    with pytest.raises(ActionRejected) as refused:
        drop("customers")
    rejecter.join()
    assert refused.value.verdict.action == "pause"
    assert refused.value.verdict.approval.decision == "reject"
    assert {"drop": "customers"} not in calls


async def test_async_client(fresh: Credentials) -> None:
    async with AsyncClient(fresh.url, fresh.api_key, fresh.agent_id,
                           fresh.agent_secret, batch_size=10, linger_ms=50) as rc:
        verdict = await rc.decide(_event("async", run_id="d1"), wait_ms=3000, timeout_s=60)
        assert verdict.action == "allow" and verdict.mode == "shadow", verdict.reasons
        futures = await rc.send_many([_event("async", run_id=f"a{i}") for i in range(25)])
        accepted = await asyncio.gather(*futures)
        assert len({a.event_id for a in accepted}) == 25
        with pytest.raises(ValidationError) as bad:
            await rc.post(_event("async", priority="urgent"))
        assert bad.value.field == "priority"
        ran: list[int] = []

        @rc.guard("async", "read", run_id="g1", timeout_s=30)
        async def read(id: int) -> int:
            ran.append(id)
            return id * 2

        assert await read(1) == 2 and ran == [1]


def test_retry_policy() -> None:
    """Which answers are retried, and how long the SDK waits (no server needed)."""
    from ratchet_client._core import Config, Core

    core = Core(Config("http://gw", "rk", "a", "s", max_retries=3, backoff_s=0.2,
                       max_retry_after_s=30))
    h = httpx.Headers
    assert core.retry_delay(0, 429, h({"Retry-After": "2"})) == 2.0
    assert core.retry_delay(0, 503, h({"Retry-After": "1"})) == 1.0
    assert core.retry_delay(0, 429, h({"Retry-After": "60"})) is None  # longer than allowed
    assert core.retry_delay(0, 409, h({"Retry-After": "1"})) == 1.0    # key still in progress
    assert core.retry_delay(0, 409, h({})) is None                     # a real conflict
    for status in (400, 401, 404, 413, 422, 500):
        assert core.retry_delay(0, status, h({})) is None, status
    for attempt in range(3):
        delay = core.retry_delay(attempt, 503, h({}))
        assert delay is not None and 0 <= delay <= 0.2 * 2 ** attempt
        conn = core.retry_delay(attempt, None, None)
        assert conn is not None and 0 <= conn <= 0.2 * 2 ** attempt
    assert core.retry_delay(3, 503, h({})) is None and core.retry_delay(3, None, None) is None


def _fake_gateway(answer: Any) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """The gateway's HTTP answers played by ``answer(request, n)`` (no Redis or Kafka here)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request, len(seen))

    return httpx.MockTransport(handle), seen


def _fake_client(transport: httpx.MockTransport, **options: Any) -> Client:
    options = {"project_id": "prj_test", "backoff_s": 0.001, "linger_ms": 1, **options}
    return Client("http://gw.test", "rk_test", "a1", "as_test", transport=transport, **options)


def test_a_request_that_failed_after_its_retries_is_not_sent_again_by_the_batcher() -> None:
    """Dec 5 audit: a batch whose request failed (503 after _call's retries) was requeued item
    by item, 5 × 5 = 25 requests for a documented 4 retries."""
    transport, seen = _fake_gateway(lambda req, n: httpx.Response(
        503, json={"error": "unavailable"}, headers={"Retry-After": "0"}))
    with _fake_client(transport, max_retries=2) as rc:
        fut = rc.send(_event("x"))
        assert isinstance(fut.exception(timeout=10), UnavailableError)
    assert len(seen) == 3  # the first try and max_retries retries, nothing more


def test_an_item_the_broker_refused_goes_again_and_errors_name_the_event_field() -> None:
    def answer(req: httpx.Request, n: int) -> httpx.Response:
        sent = json.loads(req.content)["events"]
        if n == 1:
            return httpx.Response(200, json={"trace_id": "t", "results": [
                {"index": 0, "status": "rejected",
                 "error": {"error": "unavailable", "field": None, "message": "kafka"}},
                {"index": 1, "status": "rejected",
                 "error": {"error": "invalid_request", "field": "events[1].priority",
                           "message": "bad"}}]})
        return httpx.Response(200, json={"trace_id": "t", "results": [
            {"index": 0, "status": "accepted", "event_id": sent[0]["event_id"]}]})

    transport, seen = _fake_gateway(answer)
    with _fake_client(transport) as rc:
        first, second = rc.send_many([_event("x"), _event("x", priority="urgent")])
        assert first.result(timeout=10).event_id
        err = second.exception(timeout=10)
        assert isinstance(err, ValidationError) and err.field == "priority"
    assert [len(json.loads(r.content)["events"]) for r in seen] == [2, 1]


def test_send_never_raises_when_the_gateway_is_down() -> None:
    """Dec 5 audit: send() asked the project id (GET /v1/whoami) itself, so with the gateway
    down it raised at once after the retries, where the TypeScript SDK returns a rejected
    promise; now the batcher asks, and the futures carry the failure."""
    def down(req: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    transport, seen = _fake_gateway(down)
    with _fake_client(transport, project_id=None, max_retries=1) as rc:
        started = time.monotonic()
        futures = rc.send_many([_event("x"), _event("x")])
        assert time.monotonic() - started < 0.5  # nothing waited for the network here
        for fut in futures:
            assert isinstance(fut.exception(timeout=10), UnavailableError)
    assert {r.url.path for r in seen} == {"/v1/whoami"}  # nothing was signed without it

    def up(req: httpx.Request, n: int) -> httpx.Response:
        if req.url.path == "/v1/whoami":
            return httpx.Response(200, json={"project_id": "prj_late", "key_id": "k",
                                             "role": "admin", "agent_id": None})
        sent = json.loads(req.content)["events"]
        return httpx.Response(200, json={"trace_id": "t", "results": [
            {"index": i, "status": "accepted", "event_id": e["event_id"]}
            for i, e in enumerate(sent)]})

    transport, seen = _fake_gateway(up)
    with _fake_client(transport, project_id=None) as rc:
        assert rc.send(_event("x")).result(timeout=10).event_id
        assert rc.config.project_id == "prj_late"
    assert [r.url.path for r in seen] == ["/v1/whoami", "/v1/events:batch"]


async def test_async_send_never_raises_when_the_gateway_is_down() -> None:
    def down(req: httpx.Request, n: int) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    transport, seen = _fake_gateway(down)  # a MockTransport serves async clients too
    async with AsyncClient("http://gw.test", "rk_test", "a1", "as_test", transport=transport,
                           backoff_s=0.001, linger_ms=1, max_retries=1) as rc:
        fut = await rc.send(_event("x"))  # queued: the failure is the future's, not send's
        assert isinstance(fut, asyncio.Future)
        with pytest.raises(UnavailableError):
            await asyncio.wait_for(fut, 10)
    assert {r.url.path for r in seen} == {"/v1/whoami"}


def test_a_long_poll_gets_its_wait_on_top_of_the_read_timeout() -> None:
    """Dec 5 audit: with timeout_s 2, verdict(wait_ms=4000) failed with a read timeout."""
    transport, seen = _fake_gateway(lambda req, n: httpx.Response(404, json={
        "error": "not_found", "field": None, "message": "not decided yet"}))
    with _fake_client(transport, timeout_s=2.0) as rc:
        assert rc.verdict("e1", wait_ms=4000) is None
    timeouts = seen[0].extensions["timeout"]
    assert timeouts["read"] == pytest.approx(6.0, abs=0.1)  # the whole call: 2 s + the wait
    assert timeouts["connect"] == pytest.approx(2.0)


def test_a_batch_answer_that_is_not_json_fails_its_events_not_the_batcher() -> None:
    """The batcher thread died on an error without a status (a 200 answer with an HTML body):
    its futures never resolved and flush() blocked for ever."""
    transport, _ = _fake_gateway(lambda req, n: httpx.Response(
        200, text="<html>proxy</html>", headers={"Content-Type": "text/html"}))
    with _fake_client(transport) as rc:
        fut = rc.send(_event("x"))
        assert fut.exception(timeout=10) is not None
        rc.flush()  # returns: the item was answered
        assert rc.send(_event("x")).exception(timeout=10) is not None  # the batcher lives on


def test_the_exit_hook_waits_a_bounded_time_and_one_hook_serves_every_client() -> None:
    import atexit

    from ratchet_client import client as client_module

    transport, _ = _fake_gateway(lambda req, n: httpx.Response(
        503, json={"error": "unavailable"}, headers={"Retry-After": "1"}))
    before = atexit._ncallbacks()  # type: ignore[attr-defined]
    for _ in range(5):
        with _fake_client(transport, max_retries=0) as rc:
            rc.send(_event("x"))
    assert atexit._ncallbacks() - before <= 1  # type: ignore[attr-defined]
    slow = _fake_client(transport, max_retries=10, linger_ms=60_000)
    slow.send_many([_event("x") for _ in range(3)])
    started = time.monotonic()
    old, client_module.EXIT_FLUSH_S = client_module.EXIT_FLUSH_S, 0.5
    try:
        client_module._close_at_exit()
    finally:
        client_module.EXIT_FLUSH_S = old
    assert time.monotonic() - started < 3.0  # not the 10 retries × 1 s the gateway asked for


def test_events_queued_without_close_are_sent_at_exit(sdk_stack: Credentials,
                                                      tmp_path: Path) -> None:
    """Dec 5 audit: a script that ended without close() lost what send queued (the batcher is a
    daemon thread); now an exit hook sends it."""
    import subprocess
    import sys

    ids = [str(uuid.uuid4()) for _ in range(3)]
    script = tmp_path / "fire_and_forget.py"
    script.write_text(
        "from ratchet_client import Client\n"
        f"rc = Client({sdk_stack.url!r}, {sdk_stack.api_key!r}, {sdk_stack.agent_id!r}, "
        f"{sdk_stack.agent_secret!r}, linger_ms=5000)\n"
        f"rc.send_many([{{'event_id': i, 'service': 'exit', 'action': 'read', 'payload': {{}}}}"
        f" for i in {ids!r}])\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    with _client(sdk_stack) as rc:
        for event_id in ids:
            assert rc.verdict(event_id, wait_ms=5000) is not None, event_id


def test_events_too_large_for_one_request_go_in_several(fresh: Credentials) -> None:
    """The batcher keeps each request under ``max_batch_bytes`` (the gateway's body limit): 30
    events of 10 KB with a 64 KB limit are sent in several requests, and every one is accepted
    (before: one request, refused whole with 413, every event failed)."""
    rec = Recording()
    with _client(fresh, batch_size=100, linger_ms=300, max_batch_bytes=64 * 1024,
                 transport=rec) as rc:
        futures = rc.send_many([_event("bulky", payload={"note": "x" * 10_000}) for _ in range(30)])
        assert len({f.result(timeout=60).event_id for f in futures}) == 30
    bodies = [q.content for q, _ in rec.posts("/v1/events:batch")]
    assert len(bodies) >= 5 and all(len(b) <= 64 * 1024 for b in bodies)
    assert sum(len(json.loads(b)["events"]) for b in bodies) == 30


def test_events_over_a_batch_value_budget_are_sent_again(fresh: Credentials) -> None:
    """The gateway refuses the events of a batch from the one that overdraws its shared value
    budget (200,000 JSON values) with 413 per item; the batcher sends those again in a later
    request, so all 25 events of 9,000 values each are accepted."""
    rec = Recording()
    with _client(fresh, batch_size=100, linger_ms=300, transport=rec) as rc:
        futures = rc.send_many([_event("wide", payload={"rows": [0] * 9_000}) for _ in range(25)])
        assert len({f.result(timeout=60).event_id for f in futures}) == 25
    answers = [json.loads(r.content) for _, r in rec.posts("/v1/events:batch")]
    assert len(answers) >= 2 and answers[0]["rejected"] >= 3
    assert {it["error"]["error"] for it in answers[0]["results"] if it.get("error")} == {
        "payload_too_large"}


def test_a_request_refused_as_too_large_is_split_in_two() -> None:
    """A gateway with a smaller body limit than the client's setting answers 413 for the
    whole request: the batcher halves it until each part goes through."""
    def answer(req: httpx.Request, n: int) -> httpx.Response:
        sent = json.loads(req.content)["events"]
        if len(sent) > 2:
            return httpx.Response(413, json={"error": "payload_too_large", "message": "big"})
        return httpx.Response(200, json={"trace_id": "t", "results": [
            {"index": i, "status": "accepted", "event_id": e["event_id"]}
            for i, e in enumerate(sent)]})

    transport, seen = _fake_gateway(answer)
    with _fake_client(transport, linger_ms=200) as rc:
        futures = rc.send_many([_event("x") for _ in range(5)])
        assert len({f.result(timeout=10).event_id for f in futures}) == 5
    assert [len(json.loads(r.content)["events"]) for r in seen] == [5, 2, 3, 1, 2]

    async def the_async_client() -> None:
        transport, seen = _fake_gateway(answer)
        async with AsyncClient("http://gw.test", "rk_test", "a1", "as_test",
                               transport=transport, project_id="prj_test", backoff_s=0.001,
                               linger_ms=200) as rc:
            futures = await rc.send_many([_event("x") for _ in range(5)])
            done = await asyncio.wait_for(asyncio.gather(*futures), 10)
            assert len({a.event_id for a in done}) == 5
        assert [len(json.loads(r.content)["events"]) for r in seen] == [5, 2, 3, 1, 2]

    asyncio.run(the_async_client())


def _budget_gateway(per_request: int) -> Any:
    """A gateway whose batch value budget takes ``per_request`` events a request: the rest of
    each batch is answered 413 payload_too_large, item by item."""
    def answer(req: httpx.Request, n: int) -> httpx.Response:
        sent = json.loads(req.content)["events"]
        return httpx.Response(200, json={"trace_id": "t", "results": [
            {"index": i, "status": "accepted", "event_id": e["event_id"]} if i < per_request
            else {"index": i, "status": "rejected", "error": {
                "error": "payload_too_large", "field": f"events[{i}]", "message": "values"}}
            for i, e in enumerate(sent)]})
    return answer


def test_a_burst_many_times_the_value_budget_is_all_sent_in_order() -> None:
    """Review of the 413 resend: each resend counted as a try, so a burst over ~5× the
    budget failed events (157 of 1,000); resent items went behind later ones. Now a 413 after
    the same request accepted others costs no try, and the rest goes again at once."""
    transport, seen = _fake_gateway(_budget_gateway(133))
    with _fake_client(transport, batch_size=1000, linger_ms=100, max_retries=2) as rc:
        futures = rc.send_many([_event("x", run_id="r") for _ in range(1000)])
        ids = [f.result(timeout=20).event_id for f in futures]
    assert len(set(ids)) == 1000
    accepted = [e["event_id"] for r in seen for e in json.loads(r.content)["events"][:133]]
    assert accepted == ids  # the gateway took them in the order they were sent


def test_a_cancelled_future_does_not_stop_the_batcher() -> None:
    transport, _ = _fake_gateway(_budget_gateway(10))
    with _fake_client(transport, linger_ms=200) as rc:
        first, second = rc.send_many([_event("x"), _event("x")])
        assert first.cancel()
        assert second.result(timeout=10).event_id
        assert rc.send(_event("x")).result(timeout=10).event_id  # the batcher lives on
        rc.flush()
