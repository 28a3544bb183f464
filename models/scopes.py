"""Role-scoped API keys: what each role may do, route by route (docs/design.md §5). Pure.

Two roles. An **ingest** key belongs in an agent: it sends events and reads the verdicts of its
own events, nothing else — bound to one agent (events of that agent only) or to the whole
project (events of any of its agents). An **admin** key is for people and operators: approvals,
policy, agents, keys, webhooks and audit, and everything an ingest key can do. Project keys made
before roles existed are admin keys.

:data:`ROUTE_ROLES` lists every route the gateway serves with the roles that may call it (``None``:
public, no key). The gateway refuses to start with a route missing from it, and authentication
looks the route up on every request, so a new route without a row cannot be served unchecked.

A key's grant is stored with the key's SHA-256 as one string (``keys.api_key(sha)``): the project
id alone for project keys made before roles (admin), else ``"<project> <role>[ <agent>]"``
(project and agent ids contain no spaces).

>>> parse_grant("prj_1")
Grant(project_id='prj_1', role='admin', agent_id=None, primary=True)
>>> parse_grant(grant_value(Grant("prj_1", INGEST, "bot-7")))
Grant(project_id='prj_1', role='ingest', agent_id='bot-7', primary=False)
>>> allows(roles_for("POST", "/v1/approvals/{event_id}"), INGEST)
False
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "ADMIN_ONLY",
    "ANY_KEY",
    "INGEST",
    "ROLES",
    "ROUTE_ROLES",
    "Grant",
    "allows",
    "grant_value",
    "parse_grant",
    "roles_for",
]

ADMIN = "admin"
INGEST = "ingest"
ROLES: tuple[str, ...] = (ADMIN, INGEST)

ANY_KEY: frozenset[str] = frozenset(ROLES)
ADMIN_ONLY: frozenset[str] = frozenset({ADMIN})

#: (method, route as the router spells it) → roles that may call it; ``None`` = no key needed.
#: HEAD is answered like GET.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str] | None] = {
    # what an agent needs
    ("POST", "/v1/events"): ANY_KEY,
    ("POST", "/v1/events:batch"): ANY_KEY,
    ("GET", "/v1/verdicts/{event_id}"): ANY_KEY,
    ("GET", "/v1/whoami"): ANY_KEY,
    # people and operators
    ("GET", "/v1/approvals"): ADMIN_ONLY,
    ("GET", "/v1/decisions:stream"): ADMIN_ONLY,
    ("POST", "/v1/approvals/{event_id}"): ADMIN_ONLY,
    ("POST", "/v1/agents"): ADMIN_ONLY,
    ("GET", "/v1/agents"): ADMIN_ONLY,
    ("GET", "/v1/agents/{agent_id}"): ADMIN_ONLY,
    ("POST", "/v1/agents/{agent_id}/secret:rotate"): ADMIN_ONLY,
    ("POST", "/v1/projects/current/keys:rotate"): ADMIN_ONLY,
    ("GET", "/v1/keys"): ADMIN_ONLY,
    ("POST", "/v1/keys"): ADMIN_ONLY,
    ("POST", "/v1/keys/{key_id}:rotate"): ADMIN_ONLY,
    ("DELETE", "/v1/keys/{key_id}"): ADMIN_ONLY,
    ("GET", "/v1/policy"): ADMIN_ONLY,
    ("PUT", "/v1/policy"): ADMIN_ONLY,
    ("GET", "/v1/policy/engine"): ADMIN_ONLY,
    ("PUT", "/v1/policy/engine"): ADMIN_ONLY,
    ("DELETE", "/v1/policy/engine"): ADMIN_ONLY,
    ("GET", "/v1/audit"): ADMIN_ONLY,
    ("POST", "/v1/webhooks"): ADMIN_ONLY,
    ("GET", "/v1/webhooks"): ADMIN_ONLY,
    ("DELETE", "/v1/webhooks/{webhook_id}"): ADMIN_ONLY,
    # public
    ("POST", "/v1/signup/tokens"): None,
    ("POST", "/v1/signup"): None,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/openapi.json"): None,
}


@dataclass(frozen=True, slots=True)
class Grant:
    """What one API key may do."""

    project_id: str
    role: str
    #: An ingest key bound to one agent; ``None``: any agent of the project.
    agent_id: str | None = None
    #: The project's own key (made with the project, rotated by ``keys:rotate``): admin.
    primary: bool = False


def parse_grant(value: str) -> Grant:
    """The grant stored for a key (see the module docstring); unknown roles are refused."""
    parts = value.split(" ")
    if len(parts) == 1:
        return Grant(parts[0], ADMIN, None, primary=True)
    if parts[1] not in ROLES or len(parts) > 3 or (len(parts) == 3 and parts[1] != INGEST):
        raise ValueError(f"not a key grant: {value[:60]!r}")
    return Grant(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def grant_value(grant: Grant) -> str:
    """Inverse of :func:`parse_grant`."""
    if grant.primary:
        return grant.project_id
    return " ".join(p for p in (grant.project_id, grant.role, grant.agent_id) if p)


def roles_for(method: str, route: str) -> frozenset[str] | None:
    """The roles that may call ``method route``; ``KeyError`` if the route is not listed."""
    return ROUTE_ROLES[("GET" if method == "HEAD" else method, route)]


def allows(roles: frozenset[str] | None, role: str) -> bool:
    return roles is None or role in roles
