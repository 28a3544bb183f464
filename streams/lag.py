"""The worker's consumer-lag gauge: a :class:`ratchet.kafka.lag.LagMonitor` living with the app.

Every worker measures the whole group's lag on ``ingest`` and ``feedback`` from the broker (not
only its own partitions), so the gauge is right while the group rebalances or a worker is down;
dashboards and alerts take ``max by (group, topic, partition)`` over the workers.
"""

from __future__ import annotations

import asyncio

import faust

from ratchet.config.settings import Settings
from ratchet.kafka.lag import LagMonitor
from ratchet.kafka.security import client_kwargs

__all__ = ["attach_lag_monitor"]


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
        await monitor.start()  # never raises: a broker that is down is retried each interval
        try:
            await asyncio.Event().wait()  # until the worker stops (cancels this task)
        finally:
            await monitor.stop()
