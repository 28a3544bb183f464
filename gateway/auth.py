"""Who is calling: the project and role behind a bearer API key, and signed events of its agents.

:func:`authenticate` is the one way a handler learns its caller, and it does every check of the
key in one place, so no route can skip one: exactly one ``Authorization`` header (400 for two);
the client address's failed-authentication counter (429 while over the limit, and every wrong
key counts, whatever the route: :mod:`gateway.lockout`); the key's grant (401 if unknown); and
the key's role against the route's row in :data:`models.scopes.ROUTE_ROLES` (403); then, on
every route but ingest, the first token of the call (:func:`gateway.limits.take_api`). The counter
and the key's record are read in one Redis round trip, the project's side of the key
(:mod:`ratchet.platform.grants`: a key is live only while its project points at it) in a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.access_log import note_project
from gateway.caller import Caller
from gateway.limits import take_api
from gateway.lockout import peer_ip, raise_if_locked_out, record_auth_failure
from gateway.state import GatewayState
from models.errors import AuthError, ForbiddenError, ValidationError
from models.events import IngestEvent
from models.sanitize import shown
from models.scopes import allows, parse_grant, roles_for
from models.signing import parse_timestamp, v1_sunset, verify
from ratchet.platform.grants import confirm_grant
from ratchet.platform.provisioning import hash_api_key

__all__ = ["Caller", "authenticate", "route_of", "verify_event"]

MAX_KEY_CHARS = 256
#: Routes that take ``ingest`` tokens (models/ratelimit.py ``event_tokens``); every other
#: authenticated route takes ``api`` tokens (:func:`gateway.limits.take_api`).
INGEST_ROUTES = frozenset({("POST", "/v1/events"), ("POST", "/v1/events:batch")})




def route_of(request: web.Request) -> tuple[str, str]:
    """(method, route as the router spells it) of a matched request."""
    resource = request.match_info.route.resource
    return request.method, resource.canonical if resource is not None else request.path


def _token(request: web.Request) -> str | None:
    """The bearer token; ``None`` without an Authorization header; 400 for two of them."""
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise ValidationError("send exactly one Authorization header", "Authorization")
    if not headers:
        return None
    scheme, _, token = headers[0].partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not (token.isascii() and token.isprintable()):
        return ""  # keys are printable ASCII; raw bytes (surrogates) never reach the hash
    return token


async def authenticate(request: web.Request, state: GatewayState) -> Caller:
    """The caller behind ``Authorization: Bearer <api key>``, allowed on this route; else 400
    (two headers), 429 (a wrong key from an address locked out), 401 (no or wrong key) or 403
    (role)."""
    method, route = route_of(request)
    roles = roles_for(method, route)  # KeyError: a route without a row is never served
    token = _token(request)
    if token is None:
        raise AuthError("missing API key: send 'Authorization: Bearer <api key>'")
    ip = peer_ip(request, state)
    failures = state.keys.auth_failures(ip)
    sha = hash_api_key(token[:MAX_KEY_CHARS + 1])
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.get(failures)
        pipe.ttl(failures)
        pipe.get(state.keys.api_key(sha))
        count, ttl, stored = await pipe.execute()
    grant_text = None if stored is None else (
        stored.decode() if isinstance(stored, bytes) else str(stored))
    grant = None if grant_text is None else parse_grant(grant_text)
    # the project must point at this key too (a leftover of a key change is not a key)
    if (not token or len(token) > MAX_KEY_CHARS or grant_text is None or grant is None
            or not await confirm_grant(state.redis, state.keys, sha, grant)):
        # a locked-out address is refused without counting; a right key is never refused by
        # the address's lockout (one client's stale key behind a shared address — NAT, a
        # proxy — must not lock every other client there out; keys are 256-bit random)
        raise_if_locked_out(state, count, ttl)
        await record_auth_failure(state, ip)
        if not token:
            raise AuthError("missing API key: send 'Authorization: Bearer <api key>'")
        raise AuthError("invalid API key")
    state.credentials.put_grant(sha, grant_text)  # a prediction for gateway.admission
    caller = Caller(grant.project_id, sha[:12], grant.role, grant.agent_id, grant.primary)
    note_project(request, caller.project_id)
    if not allows(roles, caller.role):
        raise ForbiddenError(
            f"this {caller.role} key may not call {method} {route}; use an admin key "
            "(ingest keys send events and read their verdicts only)", "Authorization")
    if (method, route) not in INGEST_ROUTES:  # they take ingest tokens by what they carry
        await take_api(request, caller.project_id, caller.role)
    return caller


def verify_event(
    event: IngestEvent,
    raw: Mapping[str, Any],
    secrets: Mapping[str, str],
    signature: Any,
    timestamp: Any,
    *,
    now: float,
    window_s: int,
    v1_until: str = "",
) -> None:
    """Raise :class:`AuthError` unless the event (``raw``: its object as sent) is signed by its
    (registered) agent; ``v1_until`` is ``RATCHET_SIGNATURE_V1_UNTIL``."""
    if signature is None or signature == "":
        raise AuthError("missing signature: sign the event with the agent's secret")
    if timestamp is None or timestamp == "":
        raise AuthError("missing signature timestamp")
    if not isinstance(signature, str):
        raise AuthError("signature must be a string 'v2=<hex>'")
    secret = secrets.get(event.agent_id)
    if secret is None:
        raise AuthError(f"unknown agent {shown(event.agent_id)} in this project; register it first")
    ts = parse_timestamp(timestamp)
    sunset = v1_sunset(v1_until)
    verify(secret, event.project_id, raw, ts, signature, now=now, window_s=window_s,
           v1_accepted=sunset is not None and now < sunset)
