"""``ratchet webhooks dispatch``: run the webhook dispatcher until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from prometheus_client import start_http_server

from models.errors import ConfigError
from ratchet.config.settings import Settings, get_settings
from ratchet.store.redis import connect_from_settings, log_reachability
from ratchet.webhooks.dispatch import WebhookDispatcher

__all__ = ["register", "run_dispatcher"]

log = logging.getLogger("ratchet.webhooks")


async def run_dispatcher(settings: Settings) -> None:
    if not settings.redis_url or not settings.kafka_bootstrap:
        raise ConfigError("the webhook dispatcher needs RATCHET_REDIS_URL and "
                          "RATCHET_KAFKA_BOOTSTRAP")
    redis = connect_from_settings(settings)
    dispatcher = WebhookDispatcher(settings, redis)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        await log_reachability(redis, settings.redis_url, log)
        # a stop while the group join is under way (which can take a rebalance timeout) ends
        # the join instead of waiting for it
        starting = asyncio.create_task(dispatcher.start())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # its error, if the join failed
            await stopping
        else:
            log.info("webhook dispatcher: stopped while joining its consumer group")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
    finally:
        stopping.cancel()
        await dispatcher.stop()
        await redis.aclose()


def _cmd_dispatch(args: argparse.Namespace) -> int:
    settings = get_settings()
    port: int = settings.webhook_metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        start_http_server(port, addr=settings.metrics_host)
    asyncio.run(run_dispatcher(settings))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    hooks = subparsers.add_parser(
        "webhooks", help="webhook delivery for verdicts",
        description="Webhooks are registered per project over the API (POST /v1/webhooks); "
                    "this command runs the dispatcher that delivers flag/pause/reject verdicts "
                    "to them (signed, retried, circuit-broken; see docs/security.md).",
    )
    sub = hooks.add_subparsers(dest="webhooks_command", metavar="ACTION")
    sub.required = True
    dispatch = sub.add_parser(
        "dispatch", help="consume the verdicts topic (own consumer group) and deliver webhooks",
    )
    dispatch.add_argument("--metrics-port", type=int, default=None,
                          help="serve Prometheus /metrics on this port (default "
                               "RATCHET_WEBHOOK_METRICS_PORT, 6067; 0 = off)")
    dispatch.set_defaults(func=_cmd_dispatch)
