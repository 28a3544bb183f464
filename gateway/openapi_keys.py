"""OpenAPI part for role-scoped keys: the ``/v1/keys`` paths and schemas, and :func:`with_roles`,
which marks every operation with the roles of :data:`models.scopes.ROUTE_ROLES` that may call it
(``x-ratchet-roles``) and its 403 answer — the document is built from the table the gateway
enforces, so it cannot drift from it.
"""

from __future__ import annotations

from typing import Any

from models.scopes import ROLES, ROUTE_ROLES

__all__ = ["keys_paths", "keys_schemas", "with_roles"]

_REF = "#/components/schemas/"
_TRACE = {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"}}
_FORBIDDEN = ("The API key's role may not call this route (ingest keys send events, read their "
              "verdicts and call whoami only), or an agent-bound ingest key named another agent.")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "headers": _TRACE,
            "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed input; `field` names the offending field.",
        401: "Missing or invalid API key.",
        404: "No such key (or agent) in the caller's project.",
        409: "The project's own key cannot be revoked (rotate it), the key was rotated or "
             "revoked concurrently, or the project has too many keys.",
        413: "Request body larger than the limit (4 MB by default).",
        429: "Rate limited (see Retry-After).",
        503: "Redis is unavailable; retry later.",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def keys_schemas() -> dict[str, Any]:
    key_props: dict[str, Any] = {
        "key_id": {"type": "string", "pattern": "^[0-9a-f]{12}$",
                   "description": "First 12 hex of the key's SHA-256 (names it in the audit log)."},
        "role": {"type": "string", "enum": list(ROLES)},
        "agent_id": {"type": ["string", "null"],
                     "description": "The one agent an ingest key serves; null: any agent."},
        "created_at": {"type": "number", "description": "Unix seconds."},
        "primary": {"type": "boolean", "description": "The project's own key (admin; rotated, "
                    "never revoked)."},
    }
    required = ["key_id", "role", "agent_id", "created_at", "primary"]
    return {
        "KeyRequest": {
            "type": "object", "required": ["role"], "additionalProperties": False,
            "properties": {"role": {"type": "string", "enum": list(ROLES)},
                           "agent_id": {"type": "string", "description": "Bind an ingest key "
                                        "to this registered agent (ingest only)."}},
        },
        "Key": {"type": "object", "required": required, "properties": key_props},
        "KeyCreated": {
            "type": "object", "required": [*required, "api_key"],
            "properties": {**key_props, "api_key": {"type": "string",
                                                    "description": "rk_...; shown once."}},
        },
        "KeyReplaced": {
            "type": "object", "required": [*required, "api_key", "revoked"],
            "properties": {**key_props,
                           "api_key": {"type": "string", "description": "rk_...; shown once."},
                           "revoked": {"type": "string", "description": "The replaced key's "
                                       "id; that key no longer works."}},
        },
        "KeyList": {"type": "object", "required": ["items"],
                    "properties": {"items": {"type": "array", "items": _ref("Key")}}},
    }


def keys_paths() -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"apiKey": []}]
    key_id = {"name": "key_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{12}$"}}
    return {
        "/v1/keys": {
            "get": {
                "summary": "The caller's project's API keys: ids, roles, agents (never a key).",
                "operationId": "listKeys",
                "security": secured,
                "responses": {"200": _json(_ref("KeyList"), "The keys, project key first."),
                              **_errors(401, 503)},
            },
            "post": {
                "summary": "Make a role-scoped key (audited); it is shown once.",
                "operationId": "createKey",
                "security": secured,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("KeyRequest")}}},
                "responses": {"201": _json(_ref("KeyCreated"), "Made; store the key now."),
                              **_errors(400, 401, 404, 409, 413, 429, 503)},
            },
        },
        "/v1/keys/{key_id}:rotate": {"post": {
            "summary": "Replace a key by a new one with the same role (audited); the old key "
                       "fails at once.",
            "operationId": "rotateKey",
            "security": secured,
            "parameters": [key_id],
            "responses": {"200": _json(_ref("KeyReplaced"), "Rotated; the new key is shown once."),
                          **_errors(401, 404, 409, 429, 503)},
        }},
        "/v1/keys/{key_id}": {"delete": {
            "summary": "Revoke a role-scoped key at once (audited).",
            "operationId": "revokeKey",
            "security": secured,
            "parameters": [key_id],
            "responses": {"204": {"description": "Revoked.", "headers": _TRACE},
                          **_errors(401, 404, 409, 503)},
        }},
    }


_LOCKED_OUT = {
    "description": "Rate limited (see Retry-After): too many failed authentications from this "
                   "address (counted on every route that takes a key), the project's bucket, "
                   "or (decision streams) too many streams and long polls of the project held "
                   "open on this gateway.",
    "headers": {**_TRACE, "Retry-After": {"$ref": "#/components/headers/RetryAfter"}},
    "content": {"application/json": {"schema": _ref("Error")}},
}


def with_roles(paths: dict[str, Any]) -> dict[str, Any]:
    """``paths`` with ``x-ratchet-roles``, a 403 answer (role) and a 429 answer (lockout) on
    every operation that takes a key."""
    out: dict[str, Any] = {}
    for path, operations in paths.items():
        out[path] = {}
        for method, op in operations.items():
            roles = ROUTE_ROLES.get((method.upper(), path))
            if roles is not None:
                op = {**op, "x-ratchet-roles": sorted(roles),
                      "responses": {"429": _LOCKED_OUT, **op["responses"],
                                    "403": _json(_ref("Error"), _FORBIDDEN)}}
            out[path][method] = op
    return out
