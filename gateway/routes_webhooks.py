"""``POST/GET /v1/webhooks`` and ``DELETE /v1/webhooks/{webhook_id}`` (project-scoped, audited).

Registration refuses URLs whose host is, or resolves to, an address webhooks may not reach
(private, loopback, link-local, CGNAT, multicast, unspecified, cloud metadata). The dispatcher
checks again at every connection (ratchet/webhooks/net.py).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractResolver

from gateway.auth import authenticate
from gateway.body import read_json
from gateway.state import state_of
from models.errors import NotFoundError, ValidationError
from models.sanitize import shown
from models.webhooks import parse_webhook_request
from ratchet.store.webhooks import WebhookStore
from ratchet.webhooks.net import GuardedResolver, check_destination

__all__ = ["WEBHOOK_RESOLVER", "routes"]

routes = web.RouteTableDef()

#: Optional DNS resolver for registration checks (tests inject one); default: the system's.
WEBHOOK_RESOLVER: web.AppKey[AbstractResolver] = web.AppKey("ratchet_webhook_resolver",
                                                            AbstractResolver)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@routes.post("/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    allow_loopback = state.settings.webhooks_allow_loopback
    spec = parse_webhook_request(await read_json(request, state.settings.max_admin_body_bytes),
                                 allow_loopback=allow_loopback)
    if not _is_ip(spec.host):
        parts = urlsplit(spec.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        inner = request.app.get(WEBHOOK_RESOLVER)
        await check_destination(GuardedResolver(allow_loopback, inner), spec.host, port)
    store = WebhookStore(state.redis, state.keys)
    hook = await store.create(caller.project_id, spec, state.settings.webhooks_per_project)
    await state.audit.append(caller.project_id, "webhook.created", f"apikey:{caller.key_id}",
                             f"webhook:{hook.id}",
                             {"url": hook.url, "actions": list(hook.actions)})
    return web.json_response({**hook.public(), "secret": hook.secret}, status=201)


@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    hooks = await WebhookStore(state.redis, state.keys).list(caller.project_id)
    return web.json_response({"items": [h.public() for h in hooks]})


@routes.delete("/v1/webhooks/{webhook_id:[^/]+}")
async def delete_webhook(request: web.Request) -> web.Response:
    state = state_of(request)
    caller = await authenticate(request, state)
    webhook_id = request.match_info["webhook_id"]
    if not 1 <= len(webhook_id) <= 64:
        raise ValidationError("webhook_id must be 1 to 64 characters", "webhook_id")
    store = WebhookStore(state.redis, state.keys)
    hook = await store.get(caller.project_id, webhook_id)
    if hook is None or not await store.delete(caller.project_id, webhook_id):
        raise NotFoundError(f"no webhook {shown(webhook_id)} in this project")
    await state.audit.append(caller.project_id, "webhook.deleted", f"apikey:{caller.key_id}",
                             f"webhook:{webhook_id}", {"url": hook.url})
    return web.Response(status=204)
