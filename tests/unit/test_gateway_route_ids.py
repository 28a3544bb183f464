"""Every ``{name}`` segment of a gateway route matches any id the gateway takes (attack run F5).

aiohttp's default segment pattern (``[^{}/]+``) refuses ``{`` and ``}``, which the ingest accepts
in event ids: such an event could be sent and paused but never looked up, approved or rejected.
"""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from gateway.app import _check_route_ids, build_app
from models.errors import ConfigError
from ratchet.config.settings import Settings

IDS = ("a{b}c", "{", "}", "{}", "100%", "a%2Fb", ".", "..", "a:rotate", "#", "?")


def _app() -> web.Application:
    return build_app(Settings(redis_url="redis://unused:1/0", kafka_bootstrap="unused:1"))


def test_every_id_segment_matches_every_id() -> None:
    dynamic = [r for r in _app().router.resources() if isinstance(r, web.DynamicResource)]
    assert {r.canonical for r in dynamic} >= {
        "/v1/verdicts/{event_id}", "/v1/approvals/{event_id}", "/v1/agents/{agent_id}",
        "/v1/agents/{agent_id}/secret:rotate", "/v1/keys/{key_id}", "/v1/keys/{key_id}:rotate",
        "/v1/webhooks/{webhook_id}",
    }
    for resource in dynamic:
        pattern = resource.get_info()["pattern"]
        for id_ in IDS:
            # the router matches the path with %2F and %25 still encoded (yarl's path_safe)
            segment = id_.replace("%", "%25").replace("/", "%2F")
            path = re.sub(r"\{\w+\}", lambda _: segment, resource.canonical)  # noqa: B023
            assert pattern.fullmatch(path), (resource.canonical, id_)


def test_a_route_on_the_default_pattern_refuses_to_start() -> None:
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.get("/v1/things/{thing_id}")
    async def thing(request: web.Request) -> web.Response:
        return web.Response()

    app.add_routes(routes)
    with pytest.raises(ConfigError, match=r"/v1/things/\{thing_id\}"):
        _check_route_ids(app)
