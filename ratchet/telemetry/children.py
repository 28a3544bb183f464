"""Labelled children of Prometheus metrics, looked up once per process.

``metric.labels(...)`` checks the label names, builds the key and takes the metric's lock at
every call: ≈ 2–5 µs with prometheus_client (keyword labels cost the most), several times per
batch on the worker's path and per request in the gateway — ≈ 4–6 % of a worker's CPU per
single event by py-spy. A labelled child stays the same object for the life of the process
(Ratchet never removes or clears one), so :func:`child` keeps each in a dict after its first
lookup. Label values are bounded by design (no ids as labels), and so is the dict.

>>> from prometheus_client import CollectorRegistry, Counter
>>> c = Counter("demo_total", "demo", ["result"], registry=CollectorRegistry())
>>> child(c, "ok") is child(c, "ok") is c.labels("ok")
True
"""

from __future__ import annotations

from typing import Any

__all__ = ["child"]

_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def child(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)`` — the values in the metric's label order — remembered."""
    key = (metric, values)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*values)
    return found
