"""Self-serve signup without an account: ``POST /v1/signup/tokens`` then ``POST /v1/signup``.

Per client IP (the socket peer unless ``RATCHET_TRUSTED_PROXIES`` says otherwise) 5 tokens per
hour and 10 per 24 h, 500 per UTC day in total, and ``RATCHET_SIGNUP_DISABLED=1`` switches both
endpoints off. Fails closed: without Redis nothing is issued (503). Redeeming an invalid token
counts as a failed authentication of the client IP.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.body import read_json
from gateway.lockout import check_auth_failures, peer_ip, record_auth_failure
from gateway.metrics import RATELIMIT_REJECTED
from gateway.state import GatewayState, state_of
from models.errors import AuthError, RateLimitedError, UnavailableError
from ratchet.platform.signup import issue_token, parse_redeem, parse_signup_request, redeem_token

__all__ = ["routes"]

routes = web.RouteTableDef()


def _enabled(state: GatewayState) -> None:
    if state.settings.signup_disabled:
        off = UnavailableError(
            "self-serve signup is switched off on this server (RATCHET_SIGNUP_DISABLED); "
            "ask the operator for a project"
        )
        off.retry_after_s = None  # no point retrying: no Retry-After
        raise off


async def _optional_json(request: web.Request, state: GatewayState) -> Any:
    if not request.can_read_body:
        return None
    return await read_json(request, state.settings.max_admin_body_bytes)


@routes.post("/v1/signup/tokens")
async def request_token(request: web.Request) -> web.Response:
    state = state_of(request)
    _enabled(state)
    wanted = parse_signup_request(await _optional_json(request, state))
    ip = peer_ip(request, state)
    try:
        issued = await issue_token(state.redis, state.keys, state.scripts, state.settings, ip,
                                   wanted, time.time())
    except RateLimitedError:
        RATELIMIT_REJECTED.labels("signup").inc()
        raise
    resp = web.json_response({"token": issued.token, "expires_in_s": issued.expires_in_s},
                             status=201)
    resp.headers["X-RateLimit-Limit"] = str(state.settings.signup_per_ip_hour)
    resp.headers["X-RateLimit-Remaining"] = str(max(issued.remaining_hour, 0))
    resp.headers["X-RateLimit-Reset"] = str(max(int(issued.reset_s + 0.999), 0))
    return resp


@routes.post("/v1/signup")
async def redeem(request: web.Request) -> web.Response:
    state = state_of(request)
    _enabled(state)
    ip = peer_ip(request, state)
    await check_auth_failures(state, ip)
    token, project_name, agent_id = parse_redeem(await _optional_json(request, state))
    try:
        done = await redeem_token(state.redis, state.keys, state.scripts, token,
                                  state.settings.default_tier, project_name, agent_id,
                                  audit=state.audit)
    except AuthError:
        await record_auth_failure(state, ip)
        raise
    return web.json_response({
        "org_id": done.org_id, "org_name": done.org_name, "project_id": done.project_id,
        "api_key": done.api_key, "agent_id": done.agent_id, "agent_secret": done.agent_secret,
        "tier": done.tier,
    }, status=201)
