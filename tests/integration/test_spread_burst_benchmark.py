"""``benchmarks.spread_burst`` runs its two tenants against a real stack: the spread bucket
refuses the attacker's spread batches long before its ingest bucket would, and every probe of
the other tenant is decided and timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.spread_burst import AGENTS, PER_BATCH, main

pytestmark = pytest.mark.kafka


def test_the_spread_burst_benchmark_measures_both_tenants(tmp_path: Path) -> None:
    out = tmp_path / "spread.json"
    assert main(["--bursts", "5", "--attack-s", "2", "--tail-s", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert (report["agents"], report["per_batch"]) == (AGENTS, PER_BATCH)
    (phase,) = report["phases"]
    assert phase["spread_burst_s"] == 5
    batches = phase["batches"]
    assert set(batches) <= {"200", "429"}, batches
    # 8,334 spread tokens and 1,667 a second of refill: about 10 + 4 batches of 796 in 2 s
    # (the ingest bucket alone would take a hundred)
    assert 5 <= batches["200"] <= 20 and batches.get("429", 0) >= 1, batches
    assert phase["events_accepted"] == PER_BATCH * batches["200"]
    assert phase["b_undecided"] == 0
    assert phase["b_alone_ms"]["n"] >= 30 and phase["b_attacked_ms"]["n"] >= 20
    assert 0 < phase["b_alone_ms"]["p50"] <= phase["b_alone_ms"]["max"]
