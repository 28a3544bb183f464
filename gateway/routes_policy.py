"""``GET /v1/policy`` and ``PUT /v1/policy``: the caller's project's guardrail policy (TOML).

GET answers the TOML text as stored (``application/toml``), or — with ``Accept:
application/json`` — a JSON object with the text, the validated normal form, version and hash.
PUT takes a TOML body (or ``{"toml": "..."}`` as JSON), validates it completely and only then
replaces the stored policy: an invalid policy is a 400 whose ``field`` is the dotted path of
the bad key, and the old policy stays in force. A replacement is audited
(``policy.replaced`` with version and hash). Workers apply a new policy within
``RATCHET_POLICY_REFRESH_S`` (docs/guardrails.md).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from gateway.auth import authenticate
from gateway.body import read_bytes
from gateway.limits import charged_work
from gateway.middleware import json_error
from gateway.state import state_of
from models.audit import check_action_actor
from models.errors import ValidationError
from models.guardrails import parse_policy_toml
from models.known_fields import refuse_unknown_fields
from ratchet.store.policies import load_policy, store_policy

__all__ = ["TOML_TYPE", "routes"]

routes = web.RouteTableDef()

TOML_TYPE = "application/toml"


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and TOML_TYPE not in accept


@routes.get("/v1/policy")
async def get_policy(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    stored = await load_policy(state.redis, state.keys, caller.project_id)
    headers = {"ETag": f'"{stored.hash}"', "X-Ratchet-Policy-Version": str(stored.version)}
    if _wants_json(request):
        return web.json_response(stored.to_dict(), headers=headers)
    return web.Response(
        text=stored.toml, content_type=TOML_TYPE, charset="utf-8", headers=headers
    )


def _policy_text(request: web.Request, raw: bytes) -> str:
    if not raw.strip():
        raise ValidationError("request body is empty; send the policy as TOML", None)
    if request.content_type == "application/json":
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", None) from None
        if isinstance(body, dict):
            refuse_unknown_fields(body, ("toml",))
        text = body.get("toml") if isinstance(body, dict) else None
        if not isinstance(text, str):
            raise ValidationError('a JSON body must be {"toml": "<policy text>"}', "toml")
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the policy must be UTF-8 text (TOML)", None) from None


@routes.put("/v1/policy")
async def put_policy(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    limit = state.settings.max_policy_bytes
    declared = request.content_length
    # read_bytes: a body that does not arrive in time, or whose client went away, is the
    # client's failure (408 / 400), never read as a dependency's
    raw = b"" if declared is not None and declared > limit else await read_bytes(request, limit)
    if len(raw) > limit or (declared is not None and declared > limit):
        return json_error(413, "payload_too_large", f"a policy is at most {limit} bytes")
    text = _policy_text(request, raw)
    actor = f"apikey:{caller.key_id}"
    check_action_actor("policy.replaced", actor)  # before the write: an audit refusal writes nothing
    with charged_work(request):  # compiling every rule's regex: charged by its measured CPU
        policy = parse_policy_toml(text)
    stored = await store_policy(
        state.redis, state.keys, caller.project_id, text, policy, actor=actor, now=time.time()
    )
    await state.audit.append(
        caller.project_id, "policy.replaced", actor, "policy",
        {"version": stored.version, "hash": stored.hash, "bytes": len(raw)},
    )
    body = stored.to_dict()
    body["applies_within_s"] = state.settings.policy_refresh_s
    return web.json_response(
        body, headers={"ETag": f'"{stored.hash}"', "X-Ratchet-Policy-Version": str(stored.version)}
    )
