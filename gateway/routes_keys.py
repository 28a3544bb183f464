"""Agents and credentials of the caller's project: register, look up, rotate.

``POST /v1/agents``, ``GET /v1/agents``, ``GET /v1/agents/{agent_id}``, ``POST /v1/agents/{agent_id}/secret:rotate``
and ``POST /v1/projects/current/keys:rotate`` (admin keys only, like every route here). Writes
take a ``register`` token of the project's tier. New secrets are in the response body once and
never logged. Another project's agents are 404.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.auth import authenticate
from gateway.body import read_json
from gateway.limits import rate_limit
from gateway.state import state_of
from models.errors import ValidationError
from models.known_fields import refuse_unknown_fields
from models.ratelimit import REGISTER
from ratchet.platform.api_keys import rotate_key as rotate_scoped_key
from ratchet.platform.credentials import (
    agent_info,
    list_agents,
    rotate_agent_secret,
    rotate_api_key,
)
from ratchet.platform.provisioning import create_agent, hash_api_key

__all__ = ["routes"]

routes = web.RouteTableDef()


async def _optional_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    return await read_json(request, state_of(request).settings.max_admin_body_bytes)


def _agent_id(request: web.Request) -> str:
    agent_id = request.match_info["agent_id"]
    if not 1 <= len(agent_id) <= 128:
        raise ValidationError("agent_id must be 1 to 128 characters", "agent_id")
    return agent_id


@routes.post("/v1/agents")
async def register_agent(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    await rate_limit(request, caller, REGISTER, 1)
    body = await _optional_json(request)
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object {\"agent_id\"?: ...}", None)
    refuse_unknown_fields(body, ("agent_id",))
    wanted = body.get("agent_id")
    if wanted is not None and not isinstance(wanted, str):
        raise ValidationError("agent_id must be a string", "agent_id")
    agent_id, secret = await create_agent(state.redis, state.keys, caller.project_id, wanted,
                                          audit=state.audit, actor=f"apikey:{caller.key_id}",
                                          max_agents=state.settings.max_agents_per_project)
    return web.json_response({"agent_id": agent_id, "agent_secret": secret}, status=201)


@routes.get("/v1/agents")
async def list_all_agents(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    return web.json_response({"items": await list_agents(state.redis, state.keys,
                                                         caller.project_id)})


@routes.get("/v1/agents/{agent_id:[^/]+}")
async def get_agent(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    info = await agent_info(state.redis, state.keys, caller.project_id, _agent_id(request))
    return web.json_response(info)


@routes.post("/v1/agents/{agent_id:[^/]+}/secret:rotate")
async def rotate_secret(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    agent_id = _agent_id(request)
    await rate_limit(request, caller, REGISTER, 1)
    secret = await rotate_agent_secret(
        state.redis, state.keys, state.scripts, caller.project_id, agent_id,
        audit=state.audit, actor=f"apikey:{caller.key_id}",
    )
    return web.json_response({"agent_id": agent_id, "agent_secret": secret})


@routes.post("/v1/projects/current/keys:rotate")
async def rotate_key(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    await rate_limit(request, caller, REGISTER, 1)
    if not caller.primary:  # an admin key made with /v1/keys: rotate that key
        info, new_key = await rotate_scoped_key(
            state.redis, state.keys, state.scripts, caller.project_id, caller.key_id,
            audit=state.audit, actor=caller.actor)
        return web.json_response({"project_id": caller.project_id, "api_key": new_key,
                                  "key_id": info.key_id})
    current = request.headers["Authorization"].partition(" ")[2].strip()
    new_key = await rotate_api_key(state.redis, state.keys, state.scripts, caller.project_id,
                                   current, audit=state.audit, actor=caller.actor)
    return web.json_response({"project_id": caller.project_id, "api_key": new_key,
                              "key_id": hash_api_key(new_key)[:12]})
