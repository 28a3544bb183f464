"""The worker's consumer-lag gauge: a :class:`ratchet.kafka.lag.LagMonitor` living with the app.

Every worker measures the whole group's lag on ``ingest`` and ``feedback`` from the broker (not
only its own partitions), so the gauge is right while the group rebalances or a worker is down;
dashboards and alerts take ``max by (group, topic, partition)`` over the workers.
"""

from __future__ import annotations

import asyncio
import logging

import faust
from aiokafka.errors import KafkaError

from ratchet.config.settings import Settings
from ratchet.kafka.lag import LagMonitor
from ratchet.kafka.security import client_kwargs

__all__ = ["attach_lag_monitor"]

log = logging.getLogger("ratchet.worker")


def attach_lag_monitor(app: faust.App, settings: Settings) -> None:
    """Run a lag monitor for the worker group while ``app`` runs (off when the interval is 0)."""
    if settings.consumer_lag_interval_s <= 0 or not settings.kafka_bootstrap:
        return
    bootstrap = settings.kafka_bootstrap

    @app.task  # type: ignore[untyped-decorator]
    async def _consumer_lag() -> None:
        monitor = LagMonitor(
            bootstrap, settings.worker_id, [settings.topic_ingest, settings.topic_feedback],
            reset="earliest", security=client_kwargs(settings),
            interval_s=settings.consumer_lag_interval_s,
        )
        try:
            await monitor.start()
            await asyncio.Event().wait()  # until the worker stops (cancels this task)
        except KafkaError as exc:
            log.warning("consumer lag will not be measured: %s", exc)
        finally:
            await monitor.stop()
