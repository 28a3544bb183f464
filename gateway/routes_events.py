"""``POST /v1/events`` (one event, optional wait for its verdict) and ``POST /v1/events:batch``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from gateway.admission import admit_batch, admit_single
from gateway.auth import Caller, authenticate, verify_event
from gateway.body import int_query, read_json
from gateway.chain_cap import chain_cap_error, refused_chains
from gateway.idempotency import idempotent
from gateway.ingest import (
    Checked,
    batch_charge,
    check_signatures,
    check_timestamp,
    envelopes,
    ingest_limits,
    other_agent_error,
    parse_batch,
    refuse_reused_ids,
    reused_id_error,
)
from gateway.limits import rate_limit, take_body
from gateway.metrics import INGEST_EVENTS
from gateway.publisher import Message
from gateway.state import GatewayState, state_of
from gateway.trace import trace_id_of
from models.errors import AuthError, UnavailableError, ValidationError
from models.events import IngestEvent
from models.ingest_schema import decode_counted
from models.ratelimit import INGEST, event_tokens
from ratchet.platform.provisioning import agent_secrets
from ratchet.telemetry.children import child

__all__ = ["routes"]

routes = web.RouteTableDef()

SIGNATURE_HEADER = "X-Ratchet-Signature"


def _json(body: Any, status: int) -> web.Response:
    """A JSON answer encoded by orjson (aiohttp's default is the standard library's ``json``,
    several times slower for the per-item results of a batch)."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


TIMESTAMP_HEADER = "X-Ratchet-Timestamp"


def _messages(
    state: GatewayState, events: list[IngestEvent], project_id: str, trace_id: str,
    received_at: float, wait: bool,
) -> tuple[list[Message], list[list[IngestEvent]]]:
    packed = envelopes(events, project_id, trace_id, received_at, wait=wait,
                       reply=state.reply_route if wait else "",
                       wire_version=state.settings.ingest_wire_version)
    topic = state.settings.topic_ingest
    return [Message(topic, k, v, trace_id) for k, v, _ in packed], [evs for _, _, evs in packed]


@routes.post("/v1/events")
async def post_event(request: web.Request) -> web.Response:
    state = state_of(request)
    admitted = await admit_single(request, state)
    if admitted is not None:
        return await _publish_event(request, state, *admitted)
    caller = await authenticate(request, state)
    taken = await take_body(request, caller, single=True)  # before any reading of the body
    return await idempotent(request, state, caller,
                            lambda: _post_event(request, state, caller, taken),
                            signed_by=(SIGNATURE_HEADER, TIMESTAMP_HEADER))


async def _post_event(
    request: web.Request, state: GatewayState, caller: Caller, taken: int
) -> web.Response:
    wait_ms = int_query(request, "wait_ms", 0, state.settings.max_wait_ms, None)
    body = await read_json(request, state.settings.max_body_bytes)
    try:
        event, _, size = decode_counted(body, caller.project_id, ingest_limits(state.settings),
                                        signed=False)
    except ValidationError:
        INGEST_EVENTS.labels("invalid").inc()
        raise
    tokens = event_tokens(*size)
    if tokens > taken:  # its tokens past those its size took before it was read (a full
        # bucket at most: an event too wide for the tier drains it rather than waiting forever)
        await rate_limit(request, caller, INGEST, tokens - taken, single_taken=taken)
    if caller.agent_id is not None and event.agent_id != caller.agent_id:
        INGEST_EVENTS.labels("unauthorized").inc()
        raise other_agent_error(caller.agent_id)
    secrets = await agent_secrets(state.redis, state.keys, caller.project_id, [event.agent_id])
    state.credentials.put_secrets(caller.project_id, secrets)
    try:
        check_timestamp(request.headers.get(TIMESTAMP_HEADER), TIMESTAMP_HEADER)
    except ValidationError:
        INGEST_EVENTS.labels("invalid").inc()
        raise
    try:
        verify_event(
            event, body, secrets, request.headers.get(SIGNATURE_HEADER),
            request.headers.get(TIMESTAMP_HEADER), now=time.time(),
            window_s=state.settings.signature_window_s,
            v1_until=state.settings.signature_v1_until,
        )
    except AuthError:
        INGEST_EVENTS.labels("unauthorized").inc()
        raise
    if not (await state.event_ids.claim([event]))[0]:
        INGEST_EVENTS.labels("conflict").inc()
        raise reused_id_error("event_id")
    return await _publish_event(request, state, caller, event, wait_ms)


async def _publish_event(
    request: web.Request, state: GatewayState, caller: Caller, event: IngestEvent,
    wait_ms: int | None,
) -> web.Response:
    """Publish an admitted event; answer 202, or 200 with its verdict when it came in time."""
    if (await refused_chains(request, [event]))[0]:
        INGEST_EVENTS.labels("invalid").inc()
        raise chain_cap_error(state.settings.max_chains_per_project)
    trace_id = trace_id_of(request)
    waiting = state.waiters.add(caller.project_id, event.event_id) if wait_ms else None
    try:
        messages, _ = _messages(state, [event], caller.project_id, trace_id, time.time(),
                                wait=bool(wait_ms))
        try:
            await state.publisher.publish(messages)
        except UnavailableError:
            INGEST_EVENTS.labels("unavailable").inc()
            raise
        child(INGEST_EVENTS, "accepted").inc()
        accepted = {"event_id": event.event_id, "status": "accepted", "trace_id": trace_id}
        if waiting is None or wait_ms is None:
            return _json(accepted, status=202)
        try:
            verdict = await asyncio.wait_for(asyncio.shield(waiting), wait_ms / 1000)
        except TimeoutError:
            return _json(accepted, status=202)
        return _json(
            {"event_id": event.event_id, "status": "decided", "trace_id": trace_id,
             "verdict": verdict},
            status=200,
        )
    finally:
        if waiting is not None:
            state.waiters.discard(caller.project_id, event.event_id, waiting)


#: The ``ratchet_ingest_events_total`` outcome of a refused batch item, by its status.
_OUTCOMES = {400: "invalid", 401: "unauthorized", 403: "unauthorized", 409: "conflict",
             413: "invalid", 422: "invalid"}


@routes.post("/v1/events:batch")
async def post_batch(request: web.Request) -> web.Response:
    state = state_of(request)
    admitted = await admit_batch(request, state)
    if admitted is not None:
        return await _publish_batch(request, state, *admitted)
    caller = await authenticate(request, state)
    taken = await take_body(request, caller, single=False)  # before any reading of the body
    return await idempotent(request, state, caller,  # its signatures are in its body
                            lambda: _post_batch(request, state, caller, taken))


async def _post_batch(
    request: web.Request, state: GatewayState, caller: Caller, taken: int
) -> web.Response:
    body = await read_json(request, state.settings.max_body_bytes)
    items = parse_batch(body, caller.project_id, state.settings.max_batch_events,
                        ingest_limits(state.settings))
    tokens, spread = batch_charge(items)  # models/ratelimit.py
    rest = tokens - taken
    if rest > 0 or spread > 0:
        await rate_limit(request, caller, INGEST, max(rest, 0), spread=spread)
    if caller.agent_id is not None:
        for it in items:
            if it.error is None and it.event is not None and it.event.agent_id != caller.agent_id:
                it.error = other_agent_error(caller.agent_id, f"events[{it.index}].agent_id")
    agents = [it.event.agent_id for it in items if it.event is not None]
    secrets = await agent_secrets(state.redis, state.keys, caller.project_id, agents)
    state.credentials.put_secrets(caller.project_id, secrets)
    check_signatures(items, secrets, now=time.time(), window_s=state.settings.signature_window_s,
                     v1_until=state.settings.signature_v1_until)
    signed = [it.event for it in items if it.error is None and it.event is not None]
    refuse_reused_ids(items, await state.event_ids.claim(signed))
    return await _publish_batch(request, state, caller, items)


async def _publish_batch(
    request: web.Request, state: GatewayState, caller: Caller, items: list[Checked]
) -> web.Response:
    """Publish the admitted items of a batch; answer each item's outcome."""
    good = [it for it in items if it.error is None and it.event is not None]
    events = [it.event for it in good if it.event is not None]
    over = await refused_chains(request, events)
    if any(over):  # rare: only then another pass
        for it, refused in zip(good, over, strict=True):
            if refused:
                it.error = chain_cap_error(state.settings.max_chains_per_project)
        good = [it for it in good if it.error is None]
        events = [it.event for it in good if it.event is not None]
    trace_id = trace_id_of(request)
    messages, groups = _messages(state, events, caller.project_id, trace_id, time.time(), False)
    if messages:
        try:
            errors = await state.publisher.publish(messages)
        except UnavailableError:
            INGEST_EVENTS.labels("unavailable").inc(len(events))
            raise
        failed_ids = {
            ev.event_id for err, evs in zip(errors, groups) if err is not None for ev in evs
        }
        for it in good:
            if it.event is not None and it.event.event_id in failed_ids:
                it.error = UnavailableError("Kafka did not acknowledge this event; retry it")
    results: list[dict[str, Any]] = [it.result() for it in items]
    # one counter update per outcome, not per event (a labelled inc costs ≈ 2.5 µs)
    outcomes: dict[str, int] = {}
    for it in items:
        outcome = "accepted" if it.error is None else _OUTCOMES.get(it.error.status, "unavailable")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for outcome, n in outcomes.items():
        child(INGEST_EVENTS, outcome).inc(n)
    accepted = outcomes.get("accepted", 0)
    counts = {"accepted": accepted, "rejected": len(items) - accepted}
    return _json(
        {"trace_id": trace_id, **counts, "results": results}, status=200
    )
