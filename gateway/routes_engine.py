"""``GET|PUT|DELETE /v1/policy/engine``: the caller's project's engine override.

Engine parameters (``[engine]``, docs/detection.md) for this project only, on top of the
deployment's global ones. PUT takes a TOML ``[engine]`` table (or JSON ``{"engine": {...}}``),
validated by the same strict model as the engine config file: an unknown key or a wrong type is
a 400 whose ``field`` names it (``engine.floor_bit``, with a "did you mean"), and nothing is
written. A stored override replaces the previous one as a whole; DELETE removes it. Both are
audited (``engine.override_replaced`` / ``engine.override_deleted``, with the values). Workers
apply a change within ``RATCHET_POLICY_REFRESH_S`` without a restart
(:class:`ratchet.store.engine_overrides.ProjectParams`).
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
from models.known_fields import refuse_unknown_fields
from models.overrides import override_toml, parse_override, parse_override_toml
from ratchet.store.engine_overrides import delete_override, load_override, save_override

__all__ = ["routes"]

routes = web.RouteTableDef()


def _body(stored: Any, refresh_s: float) -> dict[str, Any]:
    out: dict[str, Any] = stored.to_dict()
    out["toml"] = override_toml(stored.values)
    out["applies_within_s"] = refresh_s
    return out


@routes.get("/v1/policy/engine")
async def get_engine(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    stored = await load_override(state.redis, state.keys, caller.project_id)
    return web.json_response(_body(stored, state.settings.policy_refresh_s))


def _values(request: web.Request, raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise ValidationError("request body is empty; send an [engine] table as TOML", None)
    if request.content_type == "application/json":
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", None) from None
        if isinstance(body, dict):
            refuse_unknown_fields(body, ("engine",))
        table = body.get("engine") if isinstance(body, dict) else None
        if not isinstance(table, dict):
            raise ValidationError('a JSON body must be {"engine": {<parameter>: <value>}}',
                                  "engine")
        return parse_override(table)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("the override must be UTF-8 text (TOML)", None) from None
    return parse_override_toml(text)


@routes.put("/v1/policy/engine")
async def put_engine(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    limit = state.settings.max_policy_bytes
    declared = request.content_length
    # read_bytes: a body that does not arrive in time, or whose client went away, is the
    # client's failure (408 / 400), never read as a dependency's
    raw = b"" if declared is not None and declared > limit else await read_bytes(request, limit)
    if len(raw) > limit or (declared is not None and declared > limit):
        return json_error(413, "payload_too_large", f"an override is at most {limit} bytes")
    with charged_work(request):  # parsing is charged by its measured CPU, like a policy's
        values = _values(request, raw)
    actor = f"apikey:{caller.key_id}"
    check_action_actor("engine.override_replaced", actor)  # before the write
    stored = await save_override(state.redis, state.keys, caller.project_id, values,
                                 actor=actor, now=time.time())
    await state.audit.append(caller.project_id, "engine.override_replaced", actor,
                             "policy/engine", {"version": stored.version, "engine": values})
    return web.json_response(_body(stored, state.settings.policy_refresh_s))


@routes.delete("/v1/policy/engine")
async def delete_engine(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    actor = f"apikey:{caller.key_id}"
    check_action_actor("engine.override_deleted", actor)
    stored = await delete_override(state.redis, state.keys, caller.project_id, actor=actor,
                                   now=time.time())
    await state.audit.append(caller.project_id, "engine.override_deleted", actor,
                             "policy/engine", {"version": stored.version})
    return web.json_response(_body(stored, state.settings.policy_refresh_s))
