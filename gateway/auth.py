"""Who is calling: the project behind a bearer API key, and signed events of its agents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.state import GatewayState
from models.errors import AuthError
from models.events import IngestEvent
from models.signing import parse_timestamp, v1_sunset, verify
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
    return Caller(project_id, hash_api_key(token)[:12])


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
        raise AuthError(f"unknown agent {event.agent_id!r} in this project; register it first")
    ts = parse_timestamp(timestamp)
    sunset = v1_sunset(v1_until)
    verify(secret, event.project_id, raw, ts, signature, now=now, window_s=window_s,
           v1_accepted=sunset is not None and now < sunset)
