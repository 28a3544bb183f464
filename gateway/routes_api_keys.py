"""``/v1/keys``: the caller's project's role-scoped API keys (admin keys only; audited).

``POST /v1/keys`` ``{"role": "ingest"|"admin", "agent_id"?}`` makes a key (shown once, 201);
``GET /v1/keys`` lists them (ids, roles, agents; never a key); ``POST /v1/keys/{key_id}:rotate``
replaces one atomically (same grant, new key shown once); ``DELETE /v1/keys/{key_id}`` revokes a
scoped key at once (204). The project's own key is listed with ``"primary": true``; it can be
rotated here but not revoked. Writes take a ``register`` token of the project's tier.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.auth import authenticate
from gateway.body import read_json
from gateway.limits import rate_limit
from gateway.state import state_of
from models.errors import NotFoundError, ValidationError
from models.known_fields import refuse_unknown_fields
from models.ratelimit import REGISTER
from models.sanitize import shown
from ratchet.platform.api_keys import create_key, list_keys, revoke_key, rotate_key

__all__ = ["routes"]

routes = web.RouteTableDef()

_KEY_ID = re.compile(r"[0-9a-f]{12}")


def _key_id(request: web.Request) -> str:
    key_id = request.match_info["key_id"]
    if not _KEY_ID.fullmatch(key_id):
        raise NotFoundError(f"no key {shown(key_id)} in this project (key ids are 12 hex digits)")
    return key_id


@routes.post("/v1/keys")
async def create(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    await rate_limit(request, caller, REGISTER, 1)
    body: Any = await read_json(request, state.settings.max_admin_body_bytes)
    if not isinstance(body, dict):
        raise ValidationError('body must be a JSON object {"role": "ingest"|"admin", '
                              '"agent_id"?: ...}', None)
    refuse_unknown_fields(body, ("role", "agent_id"))
    info, api_key = await create_key(state.redis, state.keys, caller.project_id,
                                     body.get("role"), body.get("agent_id"),
                                     audit=state.audit, actor=caller.actor)
    return web.json_response({**info.public(), "api_key": api_key}, status=201)


@routes.get("/v1/keys")
async def list_all(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    found = await list_keys(state.redis, state.keys, caller.project_id)
    return web.json_response({"items": [k.public() for k in found]})


@routes.post("/v1/keys/{key_id:[^/]+}:rotate")
async def rotate(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    key_id = _key_id(request)
    await rate_limit(request, caller, REGISTER, 1)
    info, api_key = await rotate_key(state.redis, state.keys, state.scripts, caller.project_id,
                                     key_id, audit=state.audit, actor=caller.actor)
    return web.json_response({**info.public(), "api_key": api_key, "revoked": key_id})


@routes.delete("/v1/keys/{key_id:[^/]+}")
async def revoke(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    key_id = _key_id(request)
    await revoke_key(state.redis, state.keys, caller.project_id, key_id, audit=state.audit,
                     actor=caller.actor)
    return web.Response(status=204)
