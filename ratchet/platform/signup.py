"""Self-serve signup (docs/design.md §5): a one-time token, then one atomic provisioning step.

1. :func:`issue_token` — per client IP at most ``signup_per_ip_hour`` tokens per sliding hour and
   ``signup_per_ip_day`` per sliding 24 h, at most ``signup_daily_cap`` per UTC day in total
   (``signup_issue.lua``; checks and the issue are one atomic step). Redis keeps the token's
   SHA-256 only.
2. :func:`redeem_token` — creates org, project, API key and agent credential and consumes the
   token; a token redeems exactly once, even under concurrency. These keys live on different
   Redis Cluster slots, so redemption is a sequence of single-slot steps whose commit point is
   the token's ``GETDEL``: (a) the org hash; the project's event-id bindings hash
   (``provisioning.start_event_ids``); the project and its agent in one transaction on the
   project's tag; the API key's record — none reachable yet (the project is unlisted and nobody
   holds its key); (b) ``GETDEL`` of the token: exactly one of concurrent redemptions gets it,
   the others delete what they wrote in (a), key record first, and answer 401; (c) the project
   joins the listing of projects. Interrupted before (b), the token still redeems (an unlisted
   project nobody holds a key to is left behind); after (b), as with any lost answer, the token
   is spent.

Both fail closed: any Redis error propagates (the gateway answers 503 and issues nothing).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from models.errors import (
    AuthError,
    RateLimitedError,
    ScriptCode,
    ValidationError,
    raise_for_code,
)
from models.known_fields import refuse_unknown_fields
from ratchet.config.settings import Settings
from ratchet.platform.credentials import new_agent_secret, new_api_key
from ratchet.platform.provisioning import hash_api_key, start_event_ids
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from ratchet.store.redis import RedisClient
from ratchet.store.scripts import ScriptRegistry

__all__ = [
    "SIGNUP_TOKEN_PREFIX",
    "Issued",
    "Provisioned",
    "SignupRequest",
    "issue_token",
    "parse_redeem",
    "parse_signup_request",
    "redeem_token",
]

SIGNUP_TOKEN_PREFIX = "st_"
_EMAIL = re.compile(r"[^@\s<>\x00-\x1f\x7f]{1,64}@[^@\s<>\x00-\x1f\x7f]{1,189}\.[a-zA-Z]{2,63}")
_NAME_BAD = re.compile(r"[\x00-\x1f\x7f<>]")
_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


@dataclass(frozen=True, slots=True)
class SignupRequest:
    email: str | None
    org_name: str | None


@dataclass(frozen=True, slots=True)
class Issued:
    token: str
    expires_in_s: int
    #: Tokens this client IP may still get in the current sliding hour.
    remaining_hour: int
    #: Seconds until one more frees up in the hourly window.
    reset_s: float


@dataclass(frozen=True, slots=True)
class Provisioned:
    org_id: str
    org_name: str
    project_id: str
    api_key: str
    agent_id: str
    agent_secret: str
    tier: str


def _name(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200 or _NAME_BAD.search(value):
        raise ValidationError(
            f"{field} must be 1 to 200 characters without control characters or < >", field
        )
    return value.strip()


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("body must be a JSON object", None)
    return body


def parse_signup_request(body: Any) -> SignupRequest:
    """``{"email"?, "org_name"?}`` (an empty body is fine)."""
    obj = _object(body)
    refuse_unknown_fields(obj, ("email", "org_name"))
    email = obj.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.fullmatch(email)):
        raise ValidationError("email must be an address like name@example.com", "email")
    return SignupRequest(email, _name(obj, "org_name"))


def parse_redeem(body: Any) -> tuple[str, str | None, str | None]:
    """``{"token", "project_name"?, "agent_id"?}`` → (token, project name, agent id)."""
    obj = _object(body)
    refuse_unknown_fields(obj, ("token", "project_name", "agent_id"))
    token = obj.get("token")
    if not isinstance(token, str) or not token.startswith(SIGNUP_TOKEN_PREFIX) or len(token) > 128:
        raise ValidationError("token must be the st_... token from POST /v1/signup/tokens",
                              "token")
    agent_id = obj.get("agent_id")
    if agent_id is not None and (not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id)):
        raise ValidationError("agent_id must be 1 to 128 characters of letters, digits and "
                              ". _ : @ -, starting with a letter or digit", "agent_id")
    return token, _name(obj, "project_name"), agent_id


def _token_sha(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_REFUSED = {
    ScriptCode.SIGNUP_IP_HOUR: "this address has asked for {n} signup tokens in the last hour; "
                               "retry later",
    ScriptCode.SIGNUP_IP_DAY: "this address has asked for {n} signup tokens in the last 24 hours; "
                              "retry later",
    ScriptCode.SIGNUP_DAILY_CAP: "the daily signup capacity is used up; retry tomorrow (UTC)",
}


async def issue_token(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, settings: Settings, ip: str,
    request: SignupRequest, now: float,
) -> Issued:
    """Issue a token for ``ip`` or raise :class:`RateLimitedError` (nothing issued)."""
    token = SIGNUP_TOKEN_PREFIX + secrets.token_urlsafe(32)
    day = datetime.fromtimestamp(now, UTC)
    day_end = day.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() + 86_400
    record = orjson.dumps({"email": request.email, "org_name": request.org_name, "ip": ip,
                           "issued_at": now})
    now_ms = int(now * 1000)
    code, a, b = (int(x) for x in await scripts["signup_issue"](
        keys=[keys.signup_ip(ip), keys.signup_day(day.strftime("%Y%m%d")),
              keys.signup_token(_token_sha(token))],
        args=[now_ms, settings.signup_per_ip_hour, settings.signup_per_ip_day,
              settings.signup_daily_cap, max(int((day_end - now) * 1000), 1), record,
              settings.signup_token_ttl_s * 1000, uuid.uuid4().hex],
    ))
    if code in _REFUSED:
        limit = (settings.signup_per_ip_hour if code == ScriptCode.SIGNUP_IP_HOUR
                 else settings.signup_per_ip_day)
        raise RateLimitedError(_REFUSED[ScriptCode(code)].format(n=limit), a / 1000)
    raise_for_code(code, "signup_issue")
    # audit: signup.token_issued (client ip, email present or not — never the token)
    return Issued(token, settings.signup_token_ttl_s, a, b / 1000)


async def redeem_token(
    redis: RedisClient, keys: Keys, scripts: ScriptRegistry, token: str, tier: str,
    project_name: str | None, agent_id: str | None, audit: AuditLog | None = None,
) -> Provisioned:
    """Create org, project, API key and agent for a valid token; 401 if the token is not.

    With ``audit``, the new project's log opens with ``project.created`` and ``agent.created``
    by actor ``signup:<org id>``.
    """
    org_id = f"org_{uuid.uuid4().hex[:16]}"
    project_id = f"prj_{uuid.uuid4().hex[:16]}"
    agent = agent_id or f"agt_{uuid.uuid4().hex[:16]}"
    api_key, secret = new_api_key(), new_agent_secret()
    default_org = "my org"
    sha = hash_api_key(api_key)
    token_key = keys.signup_token(_token_sha(token))
    raw = await redis.get(token_key)
    if raw is None:
        raise AuthError("invalid signup token: unknown, expired or already redeemed")
    request = orjson.loads(raw)
    now = repr(time.time())
    org_name = request.get("org_name") or default_org
    # (a) everything the token buys, unreachable until (b) and (c)
    await redis.hset(keys.org(org_id), mapping={
        "name": org_name, "email": request.get("email") or "", "created_at": now,
        "project_id": project_id, "signup_ip": str(request.get("ip"))})
    await start_event_ids(redis, keys, project_id)  # its own slot: {e:<project>}
    async with redis.pipeline(transaction=True) as pipe:  # one slot: the project's tag
        pipe.hset(keys.project(project_id), mapping={
            "name": project_name or "default", "created_at": now, "api_key_sha256": sha,
            "tier": tier, "org_id": org_id})
        pipe.hset(keys.agent(project_id, agent), mapping={"secret": secret, "created_at": now})
        pipe.sadd(keys.agents(project_id), agent)
        await pipe.execute()
    if not await redis.set(keys.api_key(sha), project_id, nx=True):
        await _undo(redis, keys, org_id, project_id, agent, None)
        raise_for_code(ScriptCode.ALREADY_EXISTS, "signup_redeem")
    # (b) the commit point: of concurrent redemptions exactly one gets the token
    if await redis.getdel(token_key) is None:
        await _undo(redis, keys, org_id, project_id, agent, sha)
        raise AuthError("invalid signup token: unknown, expired or already redeemed")
    await redis.sadd(keys.projects(), project_id)  # (c)
    record = request
    if audit is not None:
        actor = f"signup:{org_id}"
        await audit.append(project_id, "project.created", actor, f"project:{project_id}", {
            "name": project_name or "default", "api_key_id": hash_api_key(api_key)[:12],
            "tier": tier, "org_id": org_id, "signup_ip": record.get("ip")})
        await audit.append(project_id, "agent.created", actor, f"agent:{agent}", {})
    return Provisioned(org_id, org_name, project_id, api_key, agent, secret, tier)


async def _undo(
    redis: RedisClient, keys: Keys, org_id: str, project_id: str, agent: str, sha: str | None
) -> None:
    """Delete what a redemption that lost its token wrote: the key's record first (dead), then
    the project with its agent (one transaction), its event-id bindings hash, then the org."""
    if sha is not None:
        await redis.delete(keys.api_key(sha))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.project(project_id), keys.agent(project_id, agent),
                    keys.agents(project_id))
        await pipe.execute()
    await redis.delete(keys.event_ids(project_id))
    await redis.delete(keys.org(org_id))
