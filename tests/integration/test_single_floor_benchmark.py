"""``benchmarks.single_floor`` answers every event through its floor gateway and worker, and
reports per phase the messages the ingest topic held and each process's CPU per event."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.single_floor import measure, render


async def test_the_floor_benchmark_answers_every_event() -> None:
    args = argparse.Namespace(rates="20,20", seconds=1.5, idle_seconds=1.0, verdict_reader=True)
    r = await measure(args)
    first, second = r["phases"]
    for phase in (first, second):
        assert phase["statuses"] == {"200": 30}
        assert set(phase["cpu_us_per_event"]) == {"redis", "tansu", "gateway", "worker"}
        # CPU read from /proc for each process of the path (before idle is taken off: with so
        # few events the idle share can be as large as the work)
        assert all(phase["cpu_seconds"][k] > 0 for k in ("gateway", "worker", "tansu"))
        assert phase["cpu_us_per_event_without_broker"] == pytest.approx(
            phase["cpu_us_per_event_total"] - phase["cpu_us_per_event"]["tansu"], abs=0.11)
    # the first phase's 30 events (and the warm-up's) are held when the second begins
    assert second["ingest_messages_held_at_start"] >= first["ingest_messages_held_at_start"] + 30
    assert "floor 20/s" in render(r)
