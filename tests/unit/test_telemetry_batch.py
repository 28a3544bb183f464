"""observe_many (ratchet/telemetry/batch.py) against Histogram.observe one value at a time."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from ratchet.telemetry.batch import observe_many

BOUNDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def samples(h: Histogram) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in h.collect() for s in metric.samples if not s.name.endswith("_created")
    }


@given(st.lists(st.one_of(st.floats(-10, 100), st.sampled_from([*BOUNDS, math.inf])),
                max_size=60))
def test_same_buckets_and_count_as_observe(values: list[float]) -> None:
    one = Histogram("one", "h", buckets=BOUNDS, registry=CollectorRegistry())
    many = Histogram("many", "h", buckets=BOUNDS, registry=CollectorRegistry())
    for v in values:
        one.observe(v)
    observe_many(many, values)
    a = {k.replace("one", "x", 1): v for k, v in samples(one).items()}
    b = {k.replace("many", "x", 1): v for k, v in samples(many).items()}
    assert a.keys() == b.keys()
    for k, value in a.items():
        if k.startswith("x_sum"):
            assert math.isclose(value, b[k], rel_tol=1e-9, abs_tol=1e-9)
        else:
            assert value == b[k], k


def test_labelled_histogram_and_nan() -> None:
    h = Histogram("lab", "h", ["mode"], buckets=BOUNDS, registry=CollectorRegistry())
    observe_many(h.labels(mode="shadow"), [0.1, 3.0, float("nan"), 100.0])
    got = samples(h)
    assert got["lab_count[('mode', 'shadow')]"] == 3  # NaN is in no bucket
    assert got["lab_bucket[('le', '0.5'), ('mode', 'shadow')]"] == 1
    assert got["lab_bucket[('le', '4.0'), ('mode', 'shadow')]"] == 2
    assert got["lab_bucket[('le', '+Inf'), ('mode', 'shadow')]"] == 3
    assert math.isnan(got["lab_sum[('mode', 'shadow')]"])
