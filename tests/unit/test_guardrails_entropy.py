"""Sequence entropy: bits of the last N nodes of a run, once the run is long enough."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from models.guardrails.entropy import EntropyConfig, check_entropy, sequence_bits

CFG = EntropyConfig(window=16, min_events=10, max_bits=3.5)


def fires(history: list[str], node: str, run_events: int | None, cfg: EntropyConfig = CFG) -> bool:
    return bool(check_entropy(cfg, history, node, run_events=run_events))


def test_bits() -> None:
    assert sequence_bits([]) == 0.0
    assert sequence_bits(["a"] * 8) == 0.0
    assert sequence_bits(list("ab" * 4)) == 1.0
    assert math.isclose(sequence_bits([str(i) for i in range(16)]), 4.0)


def test_many_distinct_nodes_fire() -> None:
    nodes = [f"n{i}" for i in range(15)]
    assert fires(nodes, "n15", run_events=16)  # 4 bits > 3.5
    (r,) = check_entropy(CFG, nodes, "n15", run_events=16)
    assert r.source == "guardrail:entropy"
    assert (r.detail["bits"], r.detail["limit"], r.detail["window"], r.detail["distinct"]) == (
        4.0,
        3.5,
        16,
        16,
    )


def test_near_misses() -> None:
    normal = list("abcabcabdabcabce")  # a handful of shapes: about 2.2 bits
    assert not fires(normal[:-1], normal[-1], run_events=100)
    nodes = [f"n{i}" for i in range(15)]
    assert not fires(nodes, "n15", run_events=9)  # run too short to judge
    assert not fires(nodes, "n15", run_events=None)  # unknown count
    assert not fires(nodes, "n15", run_events=16, cfg=EntropyConfig(enabled=False))


def test_only_the_last_window_counts() -> None:
    old_noise = [f"x{i}" for i in range(100)]
    assert not fires(old_noise + ["a", "b"] * 7 + ["a"], "b", run_events=200)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), max_size=60), st.sampled_from("ab"))
def test_agrees_with_the_definition(history: list[str], node: str) -> None:
    recent = [*history[-15:], node]
    expected = sequence_bits(recent) > CFG.max_bits
    assert fires(history, node, run_events=100) == expected
