"""``benchmarks.engine`` runs with either client (``--client plain``, the default the target was
set with, and ``--client product``, the worker's), and every phase decides every event."""

from __future__ import annotations

import pytest

from benchmarks.engine import bench


@pytest.mark.parametrize("client", ["plain", "product"])
async def test_the_engine_benchmark_runs_with_either_client(redis_url: str, client: str) -> None:
    res = await bench(redis_url, 1_200, 200, 2, client)
    assert res["client"] == client
    for phase in ("ceiling", "lua", "engine", "engine_no_labels"):
        assert res[f"{phase}_events_per_s"] > 0, phase
    for ratio in ("engine_to_ceiling", "lua_to_ceiling", "engine_to_ceiling_cpu"):
        assert 0 < res[ratio] < 1, ratio
    assert res["bytes_per_chain_100_nodes"]["nodes"] >= 90
