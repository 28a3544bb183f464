"""Process-level tuning of a worker: the event loop and the garbage collector.

A worker allocates many short-lived objects per event (decoded events, verdicts, replies), which
trips CPython's generation-0 collection every 700 allocations, and each collection walks the
long-lived objects that start-up created (modules, Faust, the settings, compiled rules) again.
``gc.freeze()`` after start-up moves those into a generation no collection scans, and a higher
gen-0 threshold collects the young ones less often (``benchmarks/runtime.py`` measures both; the
figures are in docs/operations.md). uvloop replaces the asyncio event loop with libuv's, which
costs less CPU per Redis and Kafka round trip.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["DEFAULT_GEN0", "tune_gc", "use_uvloop"]

log = logging.getLogger("ratchet.worker")

#: Generation-0 threshold of a tuned worker (CPython's default is 700).
DEFAULT_GEN0 = 50_000


def tune_gc(gen0: int) -> None:
    """Freeze what exists now (call after start-up) and collect young objects every ``gen0``
    allocations instead of every 700; ``gen0 <= 0`` leaves the collector as it is.

    >>> tune_gc(0) is None
    True
    """
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)


def use_uvloop(enabled: bool) -> bool:
    """Make uvloop the event loop of every loop created from now on (before the app starts);
    whether it is in use. Without the package installed the asyncio loop stays (logged)."""
    if not enabled:
        return False
    try:
        import mode.loop

        mode.loop.use("uvloop")
    except ImportError:
        log.warning("uvloop is not installed: the worker runs on the asyncio event loop")
        return False
    return True
