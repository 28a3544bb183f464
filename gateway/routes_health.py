"""``/healthz`` (process alive), ``/readyz`` (Kafka and Redis answer), ``/metrics``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric

from gateway.state import state_of
from models.errors import UnavailableError
from ratchet.telemetry.metrics import not_on_gateways

__all__ = ["routes"]

routes = web.RouteTableDef()

CHECK_TIMEOUT_S = 1.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _redis_check(request: web.Request) -> str:
    try:
        await asyncio.wait_for(state_of(request).redis.ping(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"down: no answer within {CHECK_TIMEOUT_S}s"
    except Exception as exc:  # noqa: BLE001  (any failure means "down")
        return f"down: {type(exc).__name__}"
    return "ok"


async def _kafka_check(request: web.Request) -> str:
    try:
        await state_of(request).publisher.check(CHECK_TIMEOUT_S)
    except UnavailableError as exc:
        return f"down: {exc}"
    return "ok"


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    redis, kafka = await asyncio.gather(_redis_check(request), _kafka_check(request))
    checks = {"kafka": kafka, "redis": redis}
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


class _GatewayFamilies:
    """The process's metric families without the worker- and dispatcher-only ones
    (:func:`ratchet.telemetry.metrics.not_on_gateways`)."""

    def __init__(self) -> None:
        self._skip = not_on_gateways()

    def collect(self) -> Iterator[Metric]:
        return (family for family in REGISTRY.collect() if family.name not in self._skip)


_FAMILIES = _GatewayFamilies()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    resp = web.Response(body=generate_latest(_FAMILIES))
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp
