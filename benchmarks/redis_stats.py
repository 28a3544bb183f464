"""INFO counters of the Redis servers a benchmark started, summed over nodes.

A benchmark against one redis-server reads them through its client; against a local Redis
Cluster, each master is asked on its own connection (a cluster client's ``INFO`` answers for one
node).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

__all__ = ["cpu_seconds", "reads_processed"]


async def _summed(ports: Sequence[int], section: str, fields: Sequence[str]) -> float:
    total = 0.0
    for port in ports:
        node = Redis(host="127.0.0.1", port=port)
        try:
            info = await node.info(section)
        finally:
            await node.aclose()
        total += sum(float(info[f]) for f in fields)
    return total


async def cpu_seconds(ports: Sequence[int]) -> float:
    """CPU seconds (user + system) of the servers on ``ports``, summed."""
    return await _summed(ports, "cpu", ("used_cpu_user", "used_cpu_sys"))


async def reads_processed(ports: Sequence[int]) -> int:
    """Requests read off connections by the servers on ``ports`` (``total_reads_processed``)."""
    return int(await _summed(ports, "stats", ("total_reads_processed",)))
