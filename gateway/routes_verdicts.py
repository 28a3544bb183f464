"""``GET /v1/whoami``, ``GET /v1/verdicts/{event_id}``, ``GET/POST /v1/approvals[/{event_id}]``.

Everything is scoped by the caller's project: another project's event ids are simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

from gateway.auth import Caller, authenticate
from gateway.body import int_query, read_json
from gateway.holds import held_requests
from gateway.idempotency import idempotent
from gateway.publisher import Message
from gateway.state import GatewayState, state_of
from gateway.trace import trace_id_of
from models.envelope import FeedbackMessage, agent_key, encode_feedback
from models.errors import ConflictError, NotFoundError, ValidationError
from models.events import DEFAULT_LIMITS
from models.explain import render_text
from models.known_fields import refuse_unknown_fields
from models.params import EngineParams
from models.sanitize import clean_text, display_problem, shown
from models.verdict import Verdict
from ratchet.config.engine import engine_params
from ratchet.config.settings import Settings
from ratchet.store.explain import Explainer
from ratchet.store.verdicts import Approval, Resolution

__all__ = ["routes"]

routes = web.RouteTableDef()

DECISIONS = ("approve", "reject")
AUDIT_ACTIONS = {"approve": "approval.approved", "reject": "approval.rejected"}
MAX_REASON_CHARS = 1000


def _event_id(request: web.Request) -> str:
    event_id = request.match_info["event_id"]
    if not 1 <= len(event_id) <= 128:
        raise ValidationError("event_id must be 1 to 128 characters", "event_id")
    problem = display_problem(event_id)
    if problem:
        raise ValidationError(f"event_id must not contain {problem}", "event_id")
    return event_id


@routes.get("/v1/whoami")
async def whoami(request: web.Request) -> web.Response:
    caller = await authenticate(request, state_of(request))
    return web.json_response({"project_id": caller.project_id, "key_id": caller.key_id,
                              "role": caller.role, "agent_id": caller.agent_id})


#: Pauses between the re-reads of a long poll (``wait_ms``), seconds: quick at first, then four
#: re-reads (two Redis GETs each) a second per waiting request.
LONG_POLL_STEPS_S = (0.05, 0.1, 0.2, 0.25)


@routes.get("/v1/verdicts/{event_id:[^/]+}")
async def get_verdict(request: web.Request) -> web.Response:
    """The verdict and its approval. With ``wait_ms`` the answer is held until the verdict exists
    and, for a ``pause``, a person approved or rejected it — or until ``wait_ms`` ran out. The
    state is re-read from Redis (shared by every gateway), so any gateway's approval, a worker's
    verdict and a restart of another gateway are all seen."""
    state = state_of(request)
    caller = await authenticate(request, state)
    event_id = _event_id(request)
    want_explain = _flag(request, "explain")
    wait_ms = int_query(request, "wait_ms", 0, state.settings.max_wait_ms, 0) or 0
    held = (held_requests(request).hold(caller.project_id) if wait_ms
            else contextlib.nullcontext(True))
    with held as admitted:
        # over the project's cap of held requests: answer at once (gateway/holds.py)
        deadline = time.monotonic() + (wait_ms / 1000 if admitted else 0)
        step = 0
        while True:
            verdict = await state.store.get(caller.project_id, event_id)
            approval = (await state.store.approval(caller.project_id, event_id)
                        if verdict is not None else None)
            settled = verdict is not None and not (verdict.get("action") == "pause"
                                                   and approval is None)
            remaining = deadline - time.monotonic()
            if settled or remaining <= 0:
                break
            await asyncio.sleep(min(LONG_POLL_STEPS_S[min(step, len(LONG_POLL_STEPS_S) - 1)],
                                    remaining))
            step += 1
    if verdict is None or (caller.agent_id is not None
                           and verdict.get("agent_id") != caller.agent_id):
        # an agent-bound ingest key reads its own agent's verdicts; others look like no verdict
        raise NotFoundError(f"no verdict for event {event_id} (not decided yet, or unknown)")
    body: dict[str, Any] = {"event_id": event_id, "verdict": verdict,
                            "approval": approval.to_dict() if approval else None}
    if want_explain:
        explainer = Explainer(state.redis, state.keys, _engine_params(state.settings))
        explained = await explainer.explain_verdict(Verdict.from_dict(verdict), body["approval"])
        body["explain"] = {**explained.to_dict(), "text": render_text(explained)}
    return web.json_response(body)


_PARAMS: dict[str | None, EngineParams] = {}


def _engine_params(settings: Settings) -> EngineParams:
    """The engine settings the workers run with (``RATCHET_ENGINE_CONFIG``), read once: the
    floor, fallback and window an explanation compares the threshold with."""
    path = settings.engine_config
    if path not in _PARAMS:
        _PARAMS[path] = engine_params(path, settings)
    return _PARAMS[path]


def _flag(request: web.Request, name: str) -> bool:
    """An optional boolean query parameter (``1``/``true``/``0``/``false``); 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw in ("0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise ValidationError(f"{name} must be true, false, 1 or 0, got {shown(raw)}", name)


@routes.get("/v1/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    limit = int_query(request, "limit", 1, 500, 100) or 100
    cursor = request.query.get("cursor") or None
    agent_id = _agent_filter(request)
    try:
        page = await state.store.list_paused(caller.project_id, limit, cursor, agent_id)
    except ValueError as exc:
        raise ValidationError(str(exc), "cursor") from None
    return web.json_response({"items": page.verdicts, "next_cursor": page.next_cursor})


def _agent_filter(request: web.Request) -> str | None:
    """``agent_id`` of ``GET /v1/approvals`` (one agent's paused events), or ``None``."""
    agent_id = request.query.get("agent_id")
    if agent_id is None:
        return None
    if not 1 <= len(agent_id) <= DEFAULT_LIMITS.max_id_chars:
        raise ValidationError(
            f"agent_id must be 1 to {DEFAULT_LIMITS.max_id_chars} characters", "agent_id")
    problem = display_problem(agent_id)
    if problem:
        raise ValidationError(f"agent_id must not contain {problem}", "agent_id")
    return agent_id


def _decision(body: Any) -> tuple[str, str]:
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {\"decision\": ...}", None)
    refuse_unknown_fields(body, ("decision", "reason"))
    decision = body.get("decision")
    if decision not in DECISIONS:
        raise ValidationError("decision must be \"approve\" or \"reject\"", "decision")
    reason = body.get("reason", "")
    if reason is None:
        reason = ""
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ValidationError(f"reason must be a string of at most {MAX_REASON_CHARS} characters",
                              "reason")
    return str(decision), clean_text(reason)  # shown to humans later: no markup, no controls


@routes.post("/v1/approvals/{event_id:[^/]+}")
async def decide(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    return await idempotent(request, state, caller,
                            lambda: _decide(request, state, caller),
                            state.settings.max_admin_body_bytes)


async def _decide(request: web.Request, state: GatewayState, caller: Caller) -> web.Response:
    event_id = _event_id(request)
    decision, reason = _decision(await read_json(request, state.settings.max_admin_body_bytes))
    verdict = await state.store.get(caller.project_id, event_id)
    if verdict is None:
        raise NotFoundError(f"event {event_id} is not paused (unknown or expired)")
    now = time.time()
    actor = caller.actor
    agent_id = str(verdict.get("agent_id", "")) or None
    outcome, score = await state.store.resolve(
        caller.project_id, event_id, Approval(decision, reason, actor, now),
        state.settings.verdict_ttl_s, agent_id,
    )
    if outcome is Resolution.NOT_PAUSED:
        raise NotFoundError(f"event {event_id} is not paused")
    if outcome is Resolution.ALREADY_DECIDED:
        raise ConflictError(f"event {event_id} was already approved or rejected")
    trace_id = trace_id_of(request)
    msg = FeedbackMessage(caller.project_id, event_id, decision, reason, actor, trace_id, now)
    key = agent_key(caller.project_id, str(verdict.get("agent_id", "")))
    try:
        await state.publisher.publish(
            [Message(state.settings.topic_feedback, key, encode_feedback(msg), trace_id)]
        )
    except Exception:
        # the decision could not reach the workers: leave the event paused so a retry works
        await state.store.unresolve(caller.project_id, event_id, score, agent_id,
                                    state.settings.verdict_ttl_s)
        raise
    await state.audit.append(
        caller.project_id, AUDIT_ACTIONS[decision], actor, f"event:{event_id}",
        {"agent_id": str(verdict.get("agent_id", "")), "reason": reason, "trace_id": trace_id,
         "key_id": caller.key_id, "key_role": caller.role},
    )
    return web.json_response(
        {"event_id": event_id, "decision": decision, "status": "recorded", "trace_id": trace_id}
    )
