"""``GET /openapi.json``: the document of the running configuration."""

from __future__ import annotations

from aiohttp import web

from gateway.openapi import build_openapi
from gateway.state import state_of

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_openapi(state_of(request).settings))
