"""The OpenAPI 3.1 document of the gateway, built from the same constants the handlers use.

``python -m gateway.openapi > docs/openapi.json`` regenerates the checked-in copy (a test keeps
them equal); the running gateway serves it at ``/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from gateway.openapi_audit import audit_paths, audit_schemas
from gateway.openapi_keys import keys_paths, keys_schemas, with_roles
from models.events import DEFAULT_LIMITS, PRIORITIES
from models.idempotency import HEADER as IDEMPOTENCY_HEADER
from models.idempotency import REPLAYED_HEADER
from models.sanitize import UNSAFE_CLASS
from ratchet.config.settings import Settings

__all__ = ["build_openapi"]

_REF = "#/components/schemas/"
#: Identifiers: no control, invisible formatting or markup characters (models/sanitize.py).
_SAFE_TEXT = f"^[^{UNSAFE_CLASS[1:-1]}]+$"
_ID_CHARS = DEFAULT_LIMITS.max_id_chars
_MAX_NUMBER = DEFAULT_LIMITS.max_abs_number


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _text(max_len: int, description: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": _SAFE_TEXT,
            "description": description}


def _json(schema: dict[str, Any], description: str, headers: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": schema}}}
    if headers:
        out["headers"] = {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"}}
    return out


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _limited(response: dict[str, Any]) -> dict[str, Any]:
    """Add the ``X-RateLimit-*`` headers (and ``Retry-After`` on a 429) to a response."""
    headers = dict(response.get("headers", {}))
    for name in ("Limit", "Remaining", "Reset"):
        headers[f"X-RateLimit-{name}"] = {"$ref": f"#/components/headers/RateLimit{name}"}
    if "Rate limited" in response.get("description", ""):
        headers["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    return {**response, "headers": headers}


def _limited_all(responses: dict[str, Any]) -> dict[str, Any]:
    return {code: _limited(r) if code not in ("401",) else r for code, r in responses.items()}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed input; `field` names the offending field.",
        401: "Missing or invalid API key, unknown agent, or a bad or stale signature.",
        404: "Not found in the caller's project.",
        409: "Conflicts with stored state: already decided, an event id reused with another "
             "body, or a request with the same Idempotency-Key still in progress (with "
             "Retry-After).",
        422: "The Idempotency-Key was already used for a different request, or (POST "
             "/v1/events) for this request with other signature headers; or (ingest) the "
             "event would start a chain beyond the project's cap (`field`: `service`).",
        413: "Request body larger than the limit (4 MB by default).",
        429: "Rate limited (see Retry-After): the project's token bucket, the per-IP signup "
             "limits, too many failed authentications from this address, or (decision "
             "streams) too many streams and long polls of the project held open.",
        503: "Kafka or Redis is unavailable (or a Redis Cluster is failing over); send the "
             "same request again after Retry-After (same event ids are safe).",
    }
    out = {str(c): _error(text[c]) for c in codes}
    if "503" in out:
        out["503"]["headers"]["Retry-After"] = {"$ref": "#/components/headers/RetryAfter"}
    return out


def _schemas(settings: Settings) -> dict[str, Any]:
    max_batch = settings.max_batch_events
    number = {"type": ["number", "null"], "minimum": -_MAX_NUMBER, "maximum": _MAX_NUMBER}
    event_props: dict[str, Any] = {
        "event_id": _text(_ID_CHARS, "Client-chosen unique id (a UUID); the idempotency key."),
        "agent_id": _text(_ID_CHARS, "A registered agent of the caller's project."),
        "run_id": _text(DEFAULT_LIMITS.max_run_id_chars, "One execution (session) of the agent."),
        "service": _text(_ID_CHARS, "The tool or API the agent is about to call."),
        "action": _text(DEFAULT_LIMITS.max_action_chars, "The operation on that service."),
        "priority": {"type": "string", "enum": list(PRIORITIES), "default": "normal"},
        "payload": {"type": "object", "description": "The call's arguments (any JSON object; "
                    f"depth ≤ {settings.max_payload_depth}, "
                    f"≤ {settings.max_payload_keys} keys and ≤ {settings.max_payload_values} "
                    "JSON values in all — array elements count —, numbers ≤ 1e15)."},
        "ts": {**number, "description": "Client timestamp, Unix seconds."},
        "cost": {**number, "minimum": 0, "description": "Cost of the call (any unit)."},
        "end_of_run": {"type": "boolean", "default": False},
        "metadata": {"type": ["object", "null"], "description": "Small object: ≤ "
                     f"{settings.max_metadata_bytes} bytes of JSON, ≤ "
                     f"{settings.max_metadata_keys} keys in all, depth ≤ "
                     f"{settings.max_metadata_depth}, numbers ≤ 1e15."},
    }
    required = ["event_id", "agent_id", "run_id", "service", "action", "payload"]
    return {
        "Error": {
            "type": "object",
            "required": ["error", "field", "message"],
            "properties": {
                "error": {"type": "string", "description": "Machine-readable error code."},
                "field": {"type": ["string", "null"], "description": "Offending field."},
                "message": {"type": "string", "description": "What was wrong, what to do."},
            },
        },
        "Event": {"type": "object", "required": required, "properties": event_props},
        "SignedEvent": {
            "type": "object",
            "required": [*required, "signature", "timestamp"],
            "properties": {
                **event_props,
                "signature": {"type": "string", "pattern": "^v2=[0-9a-f]{64}$",
                              "description": "`v2=` + hex HMAC-SHA256 of the RFC 8785 form of "
                                             "the whole item less `signature` (docs/api.md)."},
                "timestamp": {"type": "integer", "minimum": 0,
                              "description": "Signing time, Unix seconds (±5 min)."},
            },
        },
        "Batch": {
            "type": "object", "additionalProperties": False,
            "required": ["events"],
            "properties": {"events": {
                "type": "array", "minItems": 1, "maxItems": max_batch,
                "description": "Each item is checked on its own: a valid SignedEvent is "
                               "accepted; any other item (wrong fields, not an object) is "
                               "answered `rejected` in `results`, and the request still "
                               "succeeds (200).",
                "items": _ref("SignedEvent")}},
        },
        "Accepted": {
            "type": "object",
            "required": ["event_id", "status", "trace_id"],
            "properties": {"event_id": {"type": "string"}, "status": {"const": "accepted"},
                           "trace_id": {"type": "string"}},
        },
        "Decided": {
            "type": "object",
            "required": ["event_id", "status", "trace_id", "verdict"],
            "properties": {"event_id": {"type": "string"}, "status": {"const": "decided"},
                           "trace_id": {"type": "string"}, "verdict": _ref("Verdict")},
        },
        "Verdict": {
            "type": "object",
            "required": ["event_id", "agent_id", "action", "mode", "anomalous", "score",
                         "threshold", "reasons", "decided_at"],
            "properties": {
                "event_id": {"type": "string"}, "agent_id": {"type": "string"},
                "run_id": {"type": "string"}, "trace_id": {"type": "string"},
                "chain": {"type": "string"},
                "mode": {"type": "string", "enum": ["shadow", "soft_lock", "locked"]},
                "anomalous": {"type": "boolean"},
                "score": {"type": "number", "description": "Surprise of the transition, bits."},
                "threshold": {"type": "number", "description": "Bits."},
                "edge": {"type": "object"},
                "action": {"type": "string", "enum": ["allow", "flag", "pause", "reject"]},
                "reasons": {"type": "array", "items": {"type": "object"}},
                "decided_at": {"type": "number"},
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["index", "event_id", "status"],
            "properties": {
                "index": {"type": "integer", "minimum": 0},
                "event_id": {"type": ["string", "null"]},
                "status": {"type": "string", "enum": ["accepted", "rejected"]},
                "error": _ref("Error"),
            },
        },
        "BatchResponse": {
            "type": "object",
            "required": ["trace_id", "accepted", "rejected", "results"],
            "properties": {
                "trace_id": {"type": "string"},
                "accepted": {"type": "integer", "minimum": 0},
                "rejected": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": _ref("BatchResult")},
            },
        },
        "Approval": {
            "type": "object",
            "required": ["decision", "reason", "actor", "decided_at"],
            "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]},
                           "reason": {"type": "string"}, "actor": {"type": "string"},
                           "decided_at": {"type": "number"}},
        },
        "VerdictLookup": {
            "type": "object",
            "required": ["event_id", "verdict", "approval"],
            "properties": {"event_id": {"type": "string"}, "verdict": _ref("Verdict"),
                           "approval": {"oneOf": [_ref("Approval"), {"type": "null"}]},
                           "explain": {"type": "object", "required": ["text", "action"],
                                       "description": "Only with ?explain=true.",
                                       "properties": {"text": {"type": "string"},
                                                      "action": {"type": "string"}}}},
        },
        "ApprovalsPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": {"type": "object"}},
                           "next_cursor": {"type": ["string", "null"]}},
        },
        "DecisionRequest": {
            "type": "object", "additionalProperties": False,
            "required": ["decision"],
            "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]},
                           "reason": {"type": ["string", "null"], "maxLength": 1000}},
        },
        "DecisionResponse": {
            "type": "object",
            "required": ["event_id", "decision", "status", "trace_id"],
            "properties": {"event_id": {"type": "string"},
                           "decision": {"type": "string", "enum": ["approve", "reject"]},
                           "status": {"const": "recorded"}, "trace_id": {"type": "string"}},
        },
        "WhoAmI": {
            "type": "object",
            "required": ["project_id", "key_id", "role", "agent_id"],
            "properties": {"project_id": {"type": "string"},
                           "key_id": {"type": "string",
                                      "description": "First 12 hex of the key's SHA-256."},
                           "role": {"type": "string", "enum": ["admin", "ingest"]},
                           "agent_id": {"type": ["string", "null"], "description": "The one "
                                        "agent an ingest key serves (null: any)."}},
        },
        "AgentRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"agent_id": {**_text(_ID_CHARS, "Wanted id (default: generated)."),
                                        "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"}},
        },
        "AgentSecret": {
            "type": "object",
            "required": ["agent_id", "agent_secret"],
            "properties": {"agent_id": {"type": "string"},
                           "agent_secret": {"type": "string", "description": "as_...; shown "
                                            "once, never retrievable again."}},
        },
        "Agent": {
            "type": "object",
            "required": ["agent_id"],
            "properties": {"agent_id": {"type": "string"}, "created_at": {"type": "string"},
                           "secret_rotated_at": {"type": "string"}},
        },
        "AgentList": {"type": "object", "required": ["items"],
                      "properties": {"items": {"type": "array", "items": _ref("Agent")}}},
        "KeyRotated": {
            "type": "object",
            "required": ["project_id", "api_key", "key_id"],
            "properties": {"project_id": {"type": "string"},
                           "api_key": {"type": "string", "description": "rk_...; shown once. "
                                       "The key used for this call no longer works."},
                           "key_id": {"type": "string"}},
        },
        "SignupTokenRequest": {
            "type": "object", "additionalProperties": False,
            "properties": {"email": {"type": "string", "maxLength": 254, "format": "email"},
                           "org_name": _text(200, "Name of the org to create.")},
        },
        "SignupToken": {
            "type": "object",
            "required": ["token", "expires_in_s"],
            "properties": {"token": {"type": "string", "description": "st_...; redeem once."},
                           "expires_in_s": {"type": "integer"}},
        },
        "SignupRedeem": {
            "type": "object", "additionalProperties": False,
            "required": ["token"],
            "properties": {"token": {"type": "string", "maxLength": 128},
                           "project_name": _text(200, "Default: \"default\"."),
                           "agent_id": {"type": "string",
                                        "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"}},
        },
        "SignupResult": {
            "type": "object",
            "required": ["org_id", "org_name", "project_id", "api_key", "agent_id",
                         "agent_secret", "tier"],
            "properties": {"org_id": {"type": "string"}, "org_name": {"type": "string"},
                           "project_id": {"type": "string"},
                           "api_key": {"type": "string", "description": "Shown once."},
                           "agent_id": {"type": "string"},
                           "agent_secret": {"type": "string", "description": "Shown once."},
                           "tier": {"type": "string"}},
        },
        "EngineOverride": {
            "type": "object",
            "required": ["project_id", "engine", "version", "source", "toml",
                         "applies_within_s"],
            "properties": {
                "project_id": {"type": "string"},
                "engine": {"type": "object", "description": "The project's engine parameters "
                           "(names and types as in the [engine] config, docs/detection.md)."},
                "version": {"type": "integer", "minimum": 0,
                            "description": "+1 on every PUT or DELETE; 0 = never set."},
                "source": {"type": "string", "enum": ["override", "global"]},
                "updated_at": {"type": ["number", "null"]},
                "updated_by": {"type": ["string", "null"]},
                "toml": {"type": "string", "description": "The override as an [engine] table."},
                "applies_within_s": {"type": "number",
                                     "description": "Workers apply a change within this."},
            },
        },
        "Policy": {
            "type": "object",
            "required": ["project_id", "version", "hash", "source", "toml", "policy"],
            "properties": {
                "project_id": {"type": "string"},
                "version": {"type": "integer", "minimum": 0,
                            "description": "+1 on every PUT; 0 = none stored (defaults)."},
                "hash": {"type": "string", "description": "SHA-256 of the normal form."},
                "source": {"type": "string", "enum": ["stored", "default"]},
                "updated_at": {"type": ["number", "null"]},
                "updated_by": {"type": ["string", "null"]},
                "toml": {"type": "string", "description": "The policy as written."},
                "policy": {"type": "object",
                           "description": "The validated policy, every default spelled out."},
                "applies_within_s": {"type": "number", "description": "PUT only: workers "
                                     "apply the new policy within this many seconds."},
            },
        },
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"const": "ok"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "checks": {"type": "object", "required": ["kafka", "redis"],
                           "properties": {"kafka": {"type": "string"},
                                          "redis": {"type": "string"}}},
            },
        },
    }


def _replayable(response: dict[str, Any]) -> dict[str, Any]:
    """A success answer that may be a replay of the first answer to an Idempotency-Key."""
    headers = {**response["headers"],
               REPLAYED_HEADER: {"$ref": "#/components/headers/IdempotentReplayed"}}
    return {**response, "headers": headers}


def _idempotent_errors(*codes: int) -> dict[str, Any]:
    out = _errors(*codes, 409, 422)
    conflict = out["409"]
    out["409"] = {**conflict, "headers": {**conflict["headers"], "Retry-After": {
        "description": "Seconds to wait when a request with the same Idempotency-Key is "
                       "still in progress.", "schema": {"type": "integer"}}}}
    return dict(sorted(out.items()))


def _idempotency_param() -> dict[str, Any]:
    return {"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
            "description": "Optional client key (1–255 visible ASCII characters): a retry with "
                           "the same key and the same request — the same API key and, on POST "
                           "/v1/events, the same signature headers — gets the first answer "
                           "back (kept 24 h, per API key) and runs nothing again; another API "
                           "key's request runs as its own. See docs/security.md."}


def _event_id_param() -> dict[str, Any]:
    return {"name": "event_id", "in": "path", "required": True,
            "description": "The event's id, percent-encoded as one path segment (`.` as `%2E`): "
                           "any id the ingest accepted, `{`, `}`, `%`, `/`, `#` and `?` included.",
            "schema": {"type": "string", "minLength": 1, "maxLength": _ID_CHARS,
                       "pattern": _SAFE_TEXT}}


def _agent_id_param() -> dict[str, Any]:
    return {"name": "agent_id", "in": "path", "required": True,
            "schema": {"type": "string", "minLength": 1, "maxLength": _ID_CHARS}}


def _security_paths(trace_param: dict[str, Any]) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"apiKey": []}]
    return {
        "/v1/agents": {"get": {
            "summary": "Every agent of the caller's project, oldest first (never a secret).",
            "operationId": "listAgents",
            "security": secured,
            "parameters": [trace_param],
            "responses": {"200": _json(_ref("AgentList"), "The agents."),
                          **_errors(401, 503)},
        }, "post": {
            "summary": "Register an agent of the caller's project; its secret is shown once.",
            "operationId": "registerAgent",
            "security": secured,
            "parameters": [trace_param],
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": _ref("AgentRequest")}}},
            "responses": _limited_all({
                "201": _json(_ref("AgentSecret"), "Registered."),
                **_errors(400, 401, 409, 413, 429, 503)}),
        }},
        "/v1/agents/{agent_id}": {"get": {
            "summary": "An agent of the caller's project (never its secret).",
            "operationId": "getAgent",
            "security": secured,
            "parameters": [_agent_id_param(), trace_param],
            "responses": {"200": _json(_ref("Agent"), "The agent."),
                          **_errors(400, 401, 404, 503)},
        }},
        "/v1/agents/{agent_id}/secret:rotate": {"post": {
            "summary": "Replace the agent's secret; the old one fails at once.",
            "operationId": "rotateAgentSecret",
            "security": secured,
            "parameters": [_agent_id_param(), trace_param],
            "responses": _limited_all({
                "200": _json(_ref("AgentSecret"), "Rotated; the new secret is shown once."),
                **_errors(400, 401, 404, 429, 503)}),
        }},
        "/v1/projects/current/keys:rotate": {"post": {
            "summary": "Replace the API key used for this call; it fails at once afterwards.",
            "operationId": "rotateApiKey",
            "security": secured,
            "parameters": [trace_param],
            "responses": _limited_all({
                "200": _json(_ref("KeyRotated"), "Rotated; the new key is shown once."),
                **_errors(401, 409, 429, 503)}),
        }},
        "/v1/signup/tokens": {"post": {
            "summary": "Self-serve signup, step 1: a one-time token (no auth; per-IP limits).",
            "operationId": "requestSignupToken",
            "parameters": [trace_param],
            "requestBody": {"required": False, "content": {
                "application/json": {"schema": _ref("SignupTokenRequest")}}},
            "responses": _limited_all({
                "201": _json(_ref("SignupToken"), "Issued."),
                **_errors(400, 413, 429, 503)}),
        }},
        "/v1/signup": {"post": {
            "summary": "Self-serve signup, step 2: redeem the token for org, project, API key "
                       "and agent credential (one atomic step; a token redeems once).",
            "operationId": "redeemSignupToken",
            "parameters": [trace_param],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("SignupRedeem")}}},
            "responses": {"201": _json(_ref("SignupResult"), "Provisioned; secrets shown once."),
                          **_errors(400, 401, 413, 429, 503)},
        }},
    }


def _paths(settings: Settings) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"apiKey": []}]
    sig_headers = [
        {"name": "X-Ratchet-Signature", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^v2=[0-9a-f]{64}$"},
         "description": "`v2=` + hex HMAC-SHA256, under the agent's secret, of the RFC 8785 "
                        "form of the whole event with `project_id` and `timestamp` bound in "
                        "(docs/api.md)."},
        {"name": "X-Ratchet-Timestamp", "in": "header", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
         "description": "Signing time in Unix seconds; more than 5 minutes off → 401."},
    ]
    trace_param = {"name": "X-Trace-Id", "in": "header", "required": False,
                   "schema": {"type": "string"},
                   "description": "Optional trace id (8–64 of [A-Za-z0-9._-]); otherwise one "
                   "is generated. Echoed on every response."}
    return {
        "/v1/events": {"post": {
            "summary": "Ingest one signed event; optionally wait for its verdict.",
            "operationId": "postEvent",
            "security": secured,
            "parameters": [
                {"name": "wait_ms", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": settings.max_wait_ms},
                 "description": "Wait up to this long for the verdict (200), else 202."},
                *sig_headers, _idempotency_param(), trace_param,
            ],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("Event")}}},
            "responses": _limited_all({
                "200": _replayable(_json(_ref("Decided"), "The verdict arrived within wait_ms.")),
                "202": _replayable(_json(_ref("Accepted"), "Accepted; fetch the verdict later.")),
                **_idempotent_errors(400, 401, 413, 429, 503),
            }),
        }},
        "/v1/events:batch": {"post": {
            "summary": "Ingest up to "
                       f"{settings.max_batch_events} events, each signed in the body.",
            "operationId": "postEventsBatch",
            "security": secured,
            "parameters": [_idempotency_param(), trace_param],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("Batch")}}},
            "responses": _limited_all({
                "200": _replayable(_json(_ref("BatchResponse"), "Per-event results; only "
                                         "accepted events were published.")),
                **_idempotent_errors(400, 401, 413, 429, 503),
            }),
        }},
        "/v1/whoami": {"get": {
            "summary": "The project of the API key (clients need it to sign events).",
            "operationId": "whoami",
            "security": secured,
            "parameters": [trace_param],
            "responses": {"200": _json(_ref("WhoAmI"), "The caller's project."),
                          **_errors(401, 503)},
        }},
        "/v1/verdicts/{event_id}": {"get": {
            "summary": "The verdict of an event of the caller's project.",
            "operationId": "getVerdict",
            "security": secured,
            "parameters": [
                _event_id_param(),
                {"name": "wait_ms", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": settings.max_wait_ms},
                 "description": "Long poll: hold the answer until the verdict exists and, for "
                                "a pause, a person decided it (or this many milliseconds)."},
                {"name": "explain", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
                 "description": "Add `explain`: the verdict in words (calls, new and missing "
                                "key paths, p, bits, threshold and its basis, mode, guardrail "
                                "rules, engine errors), as fields and as `text`."},
                trace_param,
            ],
            "responses": {"200": _json(_ref("VerdictLookup"), "The verdict."),
                          **_errors(400, 401, 404, 503)},
        }},
        "/v1/approvals": {"get": {
            "summary": "Paused events of the caller's project, oldest first.",
            "operationId": "listApprovals",
            "security": secured,
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
                {"name": "cursor", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "next_cursor of the last page."},
                {"name": "agent_id", "in": "query", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": _ID_CHARS,
                            "pattern": _SAFE_TEXT},
                 "description": "Only this agent's paused events (from an index of its own: "
                                "a page costs the same whatever the project holds)."},
                trace_param,
            ],
            "responses": {"200": _json(_ref("ApprovalsPage"), "One page of paused verdicts."),
                          **_errors(400, 401, 503)},
        }},
        "/v1/decisions:stream": {"get": {
            "summary": "The project's decisions as server-sent events (approval UIs).",
            "description": "text/event-stream: `event: verdict` (a non-allow verdict), "
                           "`event: approval` (a person's decision on a paused event), "
                           "`event: approval_undone`; each with an `id` to resume from "
                           "(Last-Event-ID). Starts at now without one; ends after timeout_s, "
                           "or at once (after a `: stream ended by a server error` comment) if "
                           "reading the stream fails: reconnect with Last-Event-ID.",
            "operationId": "streamDecisions",
            "security": secured,
            "parameters": [
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                 "description": "Resume after this event id (sent by browsers on reconnect). "
                                "<ms>-<seq>, each part 0 to 18446744073709551615; 400 "
                                "otherwise."},
                {"name": "after", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,20}-[0-9]{1,20}$"},
                 "description": "Resume after this event id (for clients without headers). "
                                "<ms>-<seq>, each part 0 to 18446744073709551615; 400 "
                                "otherwise."},
                {"name": "timeout_s", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 300},
                 "description": "The stream ends after this many seconds; reconnect to go on."},
                trace_param,
            ],
            "responses": {"200": {"description": "The stream.",
                                  "content": {"text/event-stream": {
                                      "schema": {"type": "string"}}}},
                          **_errors(400, 401, 503)},
        }},
        "/v1/approvals/{event_id}": {"post": {
            "summary": "Approve or reject a paused event (published to the feedback topic).",
            "operationId": "decideApproval",
            "security": secured,
            "parameters": [_event_id_param(), _idempotency_param(), trace_param],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("DecisionRequest")}}},
            "responses": {"200": _replayable(_json(_ref("DecisionResponse"), "Decision recorded.")),
                          **_idempotent_errors(400, 401, 404, 413, 503)},
        }},
        **_security_paths(trace_param),
        "/v1/policy": {
            "get": {
                "summary": "The project's guardrail policy: TOML, or JSON with Accept: "
                           "application/json.",
                "operationId": "getPolicy",
                "security": secured,
                "parameters": [trace_param],
                "responses": {
                    "200": {"description": "The stored policy (the defaults when none).",
                            "headers": {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"},
                                        "ETag": {"schema": {"type": "string"}},
                                        "X-Ratchet-Policy-Version": {
                                            "schema": {"type": "string"}}},
                            "content": {"application/toml": {"schema": {"type": "string"}},
                                        "application/json": {"schema": _ref("Policy")}}},
                    **_errors(401, 503),
                },
            },
            "put": {
                "summary": "Replace the project's guardrail policy (validated first; an "
                           "invalid one leaves the old in force).",
                "operationId": "putPolicy",
                "security": secured,
                "parameters": [trace_param],
                "requestBody": {"required": True, "content": {
                    "application/toml": {"schema": {"type": "string",
                                                    "maxLength": settings.max_policy_bytes}},
                    "application/json": {"schema": {
                        "type": "object", "required": ["toml"], "additionalProperties": False,
                        "properties": {"toml": {"type": "string"}}}},
                }},
                "responses": {
                    "200": _json(_ref("Policy"), "Stored; in force within applies_within_s."),
                    **_errors(400, 401, 413, 503),
                },
            },
        },
        "/v1/policy/engine": {
            "get": {
                "summary": "The project's engine override (engine parameters for this project "
                           "only).",
                "operationId": "getEngineOverride",
                "security": secured,
                "parameters": [trace_param],
                "responses": {"200": _json(_ref("EngineOverride"), "The override (empty: the "
                                           "global parameters apply)."),
                              **_errors(401, 503)},
            },
            "put": {
                "summary": "Replace the project's engine override (validated first: an unknown "
                           "key or wrong type is a 400 naming it; audited).",
                "operationId": "putEngineOverride",
                "security": secured,
                "parameters": [trace_param],
                "requestBody": {"required": True, "content": {
                    "application/toml": {"schema": {"type": "string",
                                                    "maxLength": settings.max_policy_bytes}},
                    "application/json": {"schema": {
                        "type": "object", "required": ["engine"], "additionalProperties": False,
                        "properties": {"engine": {"type": "object"}}}},
                }},
                "responses": {
                    "200": _json(_ref("EngineOverride"), "Stored; in force within "
                                 "applies_within_s."),
                    **_errors(400, 401, 413, 503),
                },
            },
            "delete": {
                "summary": "Remove the project's engine override (audited).",
                "operationId": "deleteEngineOverride",
                "security": secured,
                "parameters": [trace_param],
                "responses": {"200": _json(_ref("EngineOverride"), "Removed."),
                              **_errors(401, 503)},
            },
        },
        "/healthz": {"get": {
            "summary": "Liveness: the process answers.", "operationId": "healthz",
            "responses": {"200": _json(_ref("Health"), "Alive.")},
        }},
        "/readyz": {"get": {
            "summary": "Readiness: Kafka and Redis answer.", "operationId": "readyz",
            "responses": {"200": _json(_ref("Ready"), "Ready."),
                          "503": _json(_ref("Ready"), "A dependency is down (see checks).")},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics (text exposition format).", "operationId": "metrics",
            "responses": {"200": {"description": "Metrics.",
                                  "headers": {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"}},
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        }},
        "/openapi.json": {"get": {
            "summary": "This document.", "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
        }},
    }


def build_openapi(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a gateway configured by ``settings``."""
    settings = settings or Settings()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ratchet gateway",
            "version": "1",
            "description": "Signed ingest of agent tool calls, verdicts and approvals. "
                           "Every response carries X-Trace-Id. See docs/api.md.",
        },
        "paths": with_roles({**_paths(settings), **audit_paths(settings), **keys_paths()}),
        "components": {
            "schemas": {**_schemas(settings), **audit_schemas(), **keys_schemas()},
            "securitySchemes": {"apiKey": {
                "type": "http", "scheme": "bearer",
                "description": "An API key (rk_...), sent in exactly one Authorization header "
                               "(two → 400). Its role decides the routes: `ingest` keys (for "
                               "agents; optionally bound to one agent) send events and read "
                               "their verdicts; `admin` keys (the project's own key, and keys "
                               "made with role admin) call every route. Each operation lists "
                               "its roles in `x-ratchet-roles`; another role gets 403."}},
            "headers": {
                "TraceId": {"description": "Trace id of this request.",
                            "schema": {"type": "string"}},
                "RateLimitLimit": {"description": "Tokens per minute of the bucket (tier).",
                                   "schema": {"type": "integer"}},
                "RateLimitRemaining": {"description": "Whole tokens left after this request.",
                                       "schema": {"type": "integer"}},
                "RateLimitReset": {"description": "Seconds until the bucket is full again.",
                                   "schema": {"type": "integer"}},
                "RetryAfter": {"description": "Seconds to wait before retrying (integer, "
                               "rounded up).", "schema": {"type": "integer"}},
                "IdempotentReplayed": {"description": "`true` when this is the stored first "
                                       "answer to the request's Idempotency-Key.",
                                       "schema": {"type": "string", "enum": ["true"]}},
            },
        },
    }


if __name__ == "__main__":  # pragma: no cover
    json.dump(build_openapi(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
