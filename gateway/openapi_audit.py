"""OpenAPI paths and schemas of the audit log and webhook endpoints (merged by gateway.openapi).

Kept apart from the core document so the security features can evolve without touching it.
"""

from __future__ import annotations

from typing import Any

from models.audit import ACTIONS
from models.webhook_signing import DELIVERY_HEADER, SIGNATURE_HEADER
from models.webhooks import WEBHOOK_ACTIONS
from ratchet.config.settings import Settings

__all__ = ["audit_paths", "audit_schemas"]

_REF = "#/components/schemas/"
_TRACE = {"X-Trace-Id": {"$ref": "#/components/headers/TraceId"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "headers": _TRACE,
            "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed input; `field` names the offending field.",
        401: "Missing or invalid API key.",
        404: "Not found in the caller's project.",
        409: "Conflicts with stored state (webhook limit reached).",
        413: "Request body larger than the limit (4 MB by default).",
        503: "Redis is unavailable; retry later.",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def audit_schemas() -> dict[str, Any]:
    hex64 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    actions = sorted(WEBHOOK_ACTIONS)
    return {
        "AuditEntry": {
            "type": "object",
            "required": ["id", "project_id", "seq", "at", "at_ms", "action", "actor", "target",
                         "details", "prev_hash", "hash"],
            "properties": {
                "id": {"type": "string"},
                "project_id": {"type": "string"},
                "seq": {"type": "integer", "minimum": 1,
                        "description": "Position in the project's chain (1, 2, ...)."},
                "at": {"type": "string", "description": "UTC ISO 8601 time, ms precision."},
                "at_ms": {"type": "integer", "description": "The same time in Unix ms."},
                "action": {"type": "string", "enum": sorted(ACTIONS)},
                "actor": {"type": "string", "description": "apikey:<12 hex of the key's "
                          "SHA-256>, cli, system, signup:<id> or operator:<name>."},
                "target": {"type": "string"},
                "details": {"type": "object"},
                "prev_hash": {**hex64, "description": "hash of the previous entry (64 zeros "
                              "for the first)."},
                "hash": {**hex64, "description": "SHA-256 of the canonical JSON of every other "
                         "field."},
            },
        },
        "AuditPage": {
            "type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": _ref("AuditEntry")},
                           "next_cursor": {"type": ["string", "null"]}},
        },
        "WebhookRequest": {
            "type": "object", "required": ["url"], "additionalProperties": False,
            "properties": {
                "url": {"type": "string", "maxLength": 2048, "description": "https:// (or "
                        "http://) URL on a public address; private, loopback, link-local, "
                        "CGNAT, multicast and metadata addresses are refused."},
                "actions": {"type": "array", "items": {"type": "string", "enum": actions},
                            "minItems": 1, "uniqueItems": True,
                            "description": f"Verdict actions to deliver (default {actions})."},
                "description": {"type": "string", "maxLength": 200},
            },
        },
        "Webhook": {
            "type": "object",
            "required": ["id", "url", "actions", "description", "created_at"],
            "properties": {
                "id": {"type": "string"}, "url": {"type": "string"},
                "actions": {"type": "array", "items": {"type": "string", "enum": actions}},
                "description": {"type": "string"},
                "created_at": {"type": "number", "description": "Unix seconds."},
            },
        },
        "WebhookCreated": {
            "allOf": [_ref("Webhook"), {
                "type": "object", "required": ["secret"],
                "properties": {"secret": {"type": "string", "description": "whsec_...: the "
                               "signing secret, shown ONCE."}},
            }],
        },
        "WebhookList": {
            "type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref("Webhook")}},
        },
    }


def audit_paths(settings: Settings) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"apiKey": []}]
    time_param = {"type": "string", "description": "ISO 8601 time (UTC if no offset) or Unix "
                  "seconds."}
    return {
        "/v1/audit": {"get": {
            "summary": "The caller's project's audit entries, oldest first.",
            "operationId": "listAudit",
            "security": secured,
            "parameters": [
                {"name": "from", "in": "query", "required": False, "schema": time_param},
                {"name": "to", "in": "query", "required": False, "schema": time_param},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                {"name": "cursor", "in": "query", "required": False,
                 "schema": {"type": "string"}, "description": "next_cursor of the last page."},
            ],
            "responses": {"200": _json(_ref("AuditPage"), "One page of entries."),
                          **_errors(400, 401, 503)},
        }},
        "/v1/webhooks": {
            "get": {
                "summary": "The caller's project's webhooks (secrets are never shown again).",
                "operationId": "listWebhooks",
                "security": secured,
                "responses": {"200": _json(_ref("WebhookList"), "Webhooks."),
                              **_errors(401, 503)},
            },
            "post": {
                "summary": "Register a webhook for verdicts (audited). Deliveries are signed: "
                           f"`{SIGNATURE_HEADER}: t=<unix s>,v1=<hex HMAC-SHA256 of "
                           f"\"t.body\">`, with a `{DELIVERY_HEADER}` id.",
                "operationId": "createWebhook",
                "security": secured,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("WebhookRequest")}}},
                "responses": {"201": _json(_ref("WebhookCreated"), "Created; store the secret."),
                              **_errors(400, 401, 409, 413, 503)},
            },
        },
        "/v1/webhooks/{webhook_id}": {"delete": {
            "summary": "Delete a webhook of the caller's project (audited).",
            "operationId": "deleteWebhook",
            "security": secured,
            "parameters": [{"name": "webhook_id", "in": "path", "required": True,
                            "schema": {"type": "string", "maxLength": 64}}],
            "responses": {"204": {"description": "Deleted.", "headers": _TRACE},
                          **_errors(400, 401, 404, 503)},
        }},
    }
