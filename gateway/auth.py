"""Who is calling: the project behind a bearer API key, and signed events of its agents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.access_log import note_project
from gateway.state import GatewayState
from models.errors import AuthError
from models.events import IngestEvent
from models.signing import parse_timestamp, verify
from ratchet.platform.provisioning import hash_api_key, project_for_api_key

__all__ = ["Caller", "authenticate", "verify_event"]


@dataclass(frozen=True, slots=True)
class Caller:
    project_id: str
    #: First 12 hex digits of the key's SHA-256: names the key in audit trails, reveals nothing.
    key_id: str


async def authenticate(request: web.Request, state: GatewayState) -> Caller:
    """The caller's project from ``Authorization: Bearer <api key>``; 401 otherwise."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing API key: send 'Authorization: Bearer <api key>'")
    if len(token) > 256:
        raise AuthError("invalid API key")
    project_id = await project_for_api_key(state.redis, state.keys, token)
    if project_id is None:
        raise AuthError("invalid API key")
    note_project(request, project_id)
    return Caller(project_id, hash_api_key(token)[:12])


def verify_event(
    event: IngestEvent,
    secrets: Mapping[str, str],
    signature: Any,
    timestamp: Any,
    *,
    now: float,
    window_s: int,
) -> None:
    """Raise :class:`AuthError` unless the event is signed by its (registered) agent."""
    if signature is None or signature == "":
        raise AuthError("missing signature: sign the event with the agent's secret")
    if timestamp is None or timestamp == "":
        raise AuthError("missing signature timestamp")
    if not isinstance(signature, str):
        raise AuthError("signature must be a string 'v1=<hex>'")
    secret = secrets.get(event.agent_id)
    if secret is None:
        raise AuthError(f"unknown agent {event.agent_id!r} in this project; register it first")
    ts = parse_timestamp(timestamp)
    verify(
        secret, event.project_id, event.agent_id, event.service, event.action, event.payload,
        event.event_id, ts, signature, now=now, window_s=window_s,
    )
