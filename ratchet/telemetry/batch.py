"""Histogram observations of a whole batch at once.

``Histogram.observe`` walks the bucket bounds and takes a lock per value: ≈ 1–1.5 µs per event
for the engine's edge-score histogram, one of the larger items of the engine's per-event
Python time (py-spy). :func:`observe_many` counts a batch's values per bucket with ``bisect``
and adds each bucket's count and the batch's sum once — the same bucket counts and count as
observing the values one by one (the sum may differ in the last bits: it is added up in another
order). It reads the histogram's bucket bounds and values (``_upper_bounds``, ``_buckets``,
``_sum``), internals prometheus_client has kept since 0.4; ``tests/unit/test_telemetry_batch.py``
compares it with ``observe`` on the installed version, so an upgrade that changes them fails
there, not silently.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

from prometheus_client import Histogram

__all__ = ["observe_many"]


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``for v in values: histogram.observe(v)``, with one increment per bucket touched.

    NaN values are added to the sum and to no bucket, as ``observe`` does.
    """
    if not values:
        return
    bounds: list[float] = histogram._upper_bounds
    last = len(bounds)
    tally: Counter[int] = Counter()
    for v in values:
        if not math.isnan(v):
            tally[bisect_left(bounds, v)] += 1
    buckets = histogram._buckets
    for i, n in tally.items():
        if i < last:
            buckets[i].inc(n)
    histogram._sum.inc(sum(values))
