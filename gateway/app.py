"""The gateway application: routes, middleware and the lifetime of its clients.

Start-up order matters: Redis client, topics, Kafka producer, then the reply listener subscribed
to this instance's reply route — only then does the server accept requests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web, web_response

from gateway import (
    routes_api_keys,
    routes_audit,
    routes_decisions,
    routes_engine,
    routes_events,
    routes_health,
    routes_keys,
    routes_openapi,
    routes_policy,
    routes_signup,
    routes_verdicts,
    routes_webhooks,
    safe_logs,
)
from gateway.chain_cap import CHAINS
from gateway.client_ip import parse_networks
from gateway.connections import ConnectionGuard, handler_args, install
from gateway.credential_cache import CredentialCache
from gateway.holds import API_CALLS, HELD, HeldRequests
from gateway.limits import EMPTY, EmptyBuckets
from gateway.middleware import gateway_middleware
from gateway.openapi import build_openapi
from gateway.publisher import Publisher
from gateway.query import QUERY_NAMES, QueryNames, query_names
from gateway.replies import ReplyListener
from gateway.state import STATE, GatewayState
from gateway.tiers import TierCache
from gateway.waiters import Waiters
from models.envelope import COMPACT_INGEST_VERSION, ENVELOPE_VERSION
from models.errors import ConfigError
from models.ratelimit import check_spread_burst, parse_tiers
from models.scopes import ROUTE_ROLES
from models.signing import v1_sunset
from ratchet.config.settings import Settings
from ratchet.kafka.security import client_kwargs
from ratchet.kafka.topics import ensure_topics
from ratchet.store.admission import AdmissionStore
from ratchet.store.audit import AuditLog
from ratchet.store.chain_registry import ChainRegistry
from ratchet.store.idempotency import EventIds, IdempotencyStore
from ratchet.store.keys import Keys
from ratchet.store.ratelimit import RateLimiter
from ratchet.store.redis import connect_from_settings, log_reachability
from ratchet.store.scripts import scripts_for
from ratchet.store.verdicts import VerdictStore

__all__ = ["AUTO_DECOMPRESS", "SERVER_HEADER", "build_app"]

log = logging.getLogger("gateway.app")

#: The ``Server`` header of every answer: no software name or version to look up flaws by.
SERVER_HEADER = "ratchet"
# aiohttp puts "Python/3.x aiohttp/3.x" on every answer it prepares, including the 400s its
# parser sends before any application code runs (those bypass middleware and signals), so the
# default itself is replaced; _no_server_version covers the application's answers explicitly.
web_response.SERVER_SOFTWARE = SERVER_HEADER  # type: ignore[attr-defined]
# Connections get the per-address cap and JSON answers to unparseable requests
# (gateway/connections.py); aiohttp names the protocol class itself, so it is swapped once here.
install()


async def _no_server_version(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def _served(app: web.Application) -> list[tuple[str, str]]:
    """(method, route) of every route served (HEAD is GET's)."""
    return [(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"]


def _check_route_roles(app: web.Application) -> None:
    """Refuse to start with a route that has no row in models.scopes.ROUTE_ROLES: no route
    is served without a decision on which keys may call it."""
    for method, path in _served(app):
        if (method, path) not in ROUTE_ROLES:
            raise ConfigError(f"route {method} {path} has no row in "
                              "models.scopes.ROUTE_ROLES; say which key roles may call it")


#: aiohttp's pattern for a ``{name}`` path segment: it refuses ``{`` and ``}``, which ids taken
#: at ingest may contain (an event with id ``a{b}c`` could be sent but never looked up).
_DEFAULT_SEGMENT = web.DynamicResource.GOOD


def _check_route_ids(app: web.Application) -> None:
    """Refuse to start with a ``{name}`` segment on aiohttp's default pattern: every route
    segment that carries an id must be written ``{name:[^/]+}`` so it matches any id (percent-
    encoded as needed) the gateway accepted — the handler validates the id itself."""
    for resource in app.router.resources():
        if not isinstance(resource, web.DynamicResource):
            continue
        pattern = resource.get_info()["pattern"].pattern
        if _DEFAULT_SEGMENT in pattern:
            raise ConfigError(f"route {resource.canonical} has a {{name}} segment on aiohttp's "
                              "default pattern (no { or }); write it {name:[^/]+}")


def _route_queries(app: web.Application, settings: Settings) -> QueryNames:
    """The query names each route takes (gateway/query.py); refuse to start with a route the
    OpenAPI document does not describe."""
    names = query_names(build_openapi(settings))
    for method, path in _served(app):
        if (method, path) not in names:
            raise ConfigError(f"route {method} {path} is not in the OpenAPI document "
                              "(gateway/openapi.py); describe it there")
    return names


#: The HTTP server around the app inflates no body (``web.run_app`` and the tests' server take
#: the same): a compressed body is refused (415, :mod:`gateway.middleware`) and never inflated,
#: not even to be discarded.
AUTO_DECOMPRESS = False


def build_app(settings: Settings, *, create_topics: bool = True) -> web.Application:
    """The aiohttp application for ``settings`` (needs ``redis_url`` and ``kafka_bootstrap``)."""
    if not settings.redis_url:
        raise ConfigError("the gateway needs Redis: set RATCHET_REDIS_URL")
    if not settings.kafka_bootstrap:
        raise ConfigError("the gateway needs Kafka: set RATCHET_KAFKA_BOOTSTRAP")
    tiers = parse_tiers(settings.rate_limit_tiers)
    if settings.default_tier not in tiers:
        raise ConfigError(f"RATCHET_DEFAULT_TIER={settings.default_tier!r} is not one of the "
                          f"tiers in RATCHET_RATE_LIMIT_TIERS ({', '.join(tiers)})")
    check_spread_burst(settings.spread_burst_s)
    if settings.ingest_wire_version not in (ENVELOPE_VERSION, COMPACT_INGEST_VERSION):
        raise ConfigError(f"RATCHET_INGEST_WIRE_VERSION={settings.ingest_wire_version} is not "
                          f"{ENVELOPE_VERSION} (JSON) or {COMPACT_INGEST_VERSION} (compact)")
    trusted = parse_networks(settings.trusted_proxies)
    try:
        v1_sunset(settings.signature_v1_until)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    security = client_kwargs(settings)  # a bad TLS/SASL setting fails here, before serving
    for name in ("gateway_head_timeout_s", "gateway_body_timeout_s"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"RATCHET_{name.upper()} must be a positive number of seconds")
    guard = ConnectionGuard(settings.gateway_max_connections_per_ip)
    app = web.Application(
        middlewares=[gateway_middleware], client_max_size=settings.max_body_bytes,
        handler_args={"logger": safe_logs.SERVER_LOGGER,  # no raw request heads in its lines
                      **handler_args(settings, guard)},
    )
    app[HELD] = HeldRequests(settings.max_held_requests_per_project)
    app[API_CALLS] = HeldRequests(settings.max_api_calls_per_project)
    app[EMPTY] = EmptyBuckets()
    for module in (routes_events, routes_verdicts, routes_decisions, routes_audit,
                   routes_webhooks, routes_keys, routes_api_keys, routes_signup, routes_policy,
                   routes_engine, routes_health, routes_openapi):
        app.add_routes(module.routes)
    _check_route_roles(app)
    _check_route_ids(app)
    app[QUERY_NAMES] = _route_queries(app, settings)
    app.on_response_prepare.append(_no_server_version)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        assert settings.redis_url and settings.kafka_bootstrap
        redis = connect_from_settings(settings)
        limits_redis = (redis if not settings.ratelimit_redis_url
                        else connect_from_settings(settings, settings.ratelimit_redis_url))
        publisher = Publisher(
            settings.kafka_bootstrap,
            linger_ms=settings.kafka_linger_ms,
            send_timeout_s=settings.kafka_send_timeout_s,
            security=security,
        )
        waiters = Waiters()
        keys = Keys(settings.key_prefix)
        listener = ReplyListener(redis, keys, waiters)
        try:
            if create_topics:
                await ensure_topics(
                    settings.kafka_bootstrap,
                    [settings.topic_ingest, settings.topic_verdicts, settings.topic_feedback,
                     settings.topic_audit],
                    settings.topic_partitions,
                    settings.topic_replication_factor,
                    security=security,
                )
            await publisher.start()
            await log_reachability(redis, settings.redis_url, log)
            await listener.start()
            verdicts = VerdictStore(redis, keys, ttl_s=settings.verdict_ttl_s,
                                    allow_ttl_s=settings.verdict_allow_ttl_s)
            app[STATE] = GatewayState(
                settings, keys, redis, verdicts, publisher, waiters,
                scripts=scripts_for(redis), limiter=RateLimiter(limits_redis, keys,
                                                         spread_burst_s=settings.spread_burst_s),
                tiers=TierCache(tiers, settings.default_tier, settings.tier_cache_s),
                trusted_proxies=trusted,
                audit=AuditLog(redis, keys, settings, sink=publisher.send_raw),
                idempotency=IdempotencyStore(redis, keys, ttl_s=settings.idempotency_ttl_s,
                                             lease_s=settings.idempotency_lease_s),
                event_ids=EventIds(redis, keys, window_s=settings.event_id_window_s),
                admission=AdmissionStore(redis, keys, limits_redis,
                                         window_s=settings.event_id_window_s),
                credentials=CredentialCache(),
                reply_route=listener.route,
            )
            app[CHAINS] = ChainRegistry(redis, keys, cap=settings.max_chains_per_project,
                                        ttl_s=settings.chain_ttl_s)
            yield
        finally:
            await listener.stop()
            await publisher.stop()
            if limits_redis is not redis:
                await limits_redis.aclose()
            await redis.aclose()

    app.cleanup_ctx.append(lifetime)
    return app
