"""Loop breaker: same node or a short cycle repeated past a bound, on the caller's history."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.guardrails.loop import LoopConfig, check_loop

CFG = LoopConfig(max_repeats=5, max_cycle_len=3, max_cycle_repeats=3, history=32)


def rule(history: list[str], node: str, cfg: LoopConfig = CFG) -> list[str]:
    return [r.detail["rule"] for r in check_loop(cfg, history, node)]


def test_same_node_past_the_bound() -> None:
    assert rule(["x"] + ["a"] * 5, "a") == ["loop.same_node"]  # 6 in a row
    assert rule(["x"] + ["a"] * 4, "a") == []  # 5 in a row: at the bound
    assert rule(["a"] * 4 + ["b"], "a") == []  # broken by another node


def test_calls_with_varying_arguments_are_the_same_node() -> None:
    """The caller passes skeleton nodes: search(q="a"), search(q="b"), ... share one node."""
    shape = "skeleton:3f1c"  # the same shape whatever the query string was
    assert rule([shape] * 5, shape) == ["loop.same_node"]


def test_two_and_three_node_cycles() -> None:
    assert rule(list("ab" * 3) + ["a"], "b") == ["loop.cycle"]  # (a b) x4
    assert rule(list("ab" * 2) + ["a"], "b") == []  # (a b) x3: at the bound
    assert rule(list("abc" * 3) + ["a", "b"], "c") == ["loop.cycle"]
    assert rule(list("abc" * 2) + ["a", "b"], "c") == []
    assert rule(list("xabab" + "ab"), "a") == []  # 3.5 cycles of (a b) counts as 3


def test_cycle_detail_lists_the_cycle_and_counts() -> None:
    (r,) = check_loop(CFG, list("zabcabcabcab"), "c")
    assert r.source == "guardrail:loop" and r.action == "flag"
    assert r.detail["rule"] == "loop.cycle"
    assert (r.detail["cycle_len"], r.detail["repeats"], r.detail["limit"]) == (3, 4, 3)
    assert r.detail["cycle"] == ["a", "b", "c"]


def test_cycle_len_one_switches_cycles_off() -> None:
    cfg = LoopConfig(max_repeats=5, max_cycle_len=1, max_cycle_repeats=3)
    assert rule(list("ab" * 10), "a", cfg) == []


def test_occurrences_rule_catches_interleaved_repeats() -> None:
    cfg = LoopConfig(max_repeats=5, max_cycle_repeats=3, max_occurrences=4, history=16)
    assert rule(list("axayazaw"), "a", cfg) == ["loop.occurrences"]  # 5 of the last 9
    assert rule(list("axayazw"), "a", cfg) == []


def test_only_the_last_history_nodes_are_used() -> None:
    cfg = LoopConfig(max_repeats=3, max_cycle_repeats=2, max_cycle_len=2, history=4)
    assert rule(["a"] * 100, "a", cfg) == ["loop.same_node"]
    cfg = LoopConfig(max_repeats=4, max_cycle_len=1, max_occurrences=2, history=4)
    assert rule(["a"] * 10 + list("bcbc"), "a", cfg) == []  # old a's are out of the window


def test_empty_history_and_disabled() -> None:
    assert rule([], "a") == []
    assert rule(["a"] * 20, "a", LoopConfig(enabled=False)) == []


def _tail_run(seq: list[str]) -> int:
    n = 1
    while n < len(seq) and seq[-1 - n] == seq[-1]:
        n += 1
    return n


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=40), st.sampled_from("abc"))
def test_same_node_rule_matches_a_naive_count(history: list[str], node: str) -> None:
    cfg = LoopConfig(max_repeats=4, max_cycle_len=1, history=32)
    seq = [*history[-32:], node]
    assert (rule(history, node, cfg) == ["loop.same_node"]) == (_tail_run(seq) > 4)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=6))
def test_two_node_alternation_below_the_bound_never_fires(repeats: int) -> None:
    cfg = LoopConfig(max_repeats=10, max_cycle_repeats=6, history=32)
    seq = list("ab" * repeats)
    assert rule(seq[:-1], seq[-1], cfg) == []


def _primitive_by_definition(block: list[str]) -> bool:
    """The element-by-element definition ``_primitive`` replaced."""
    k = len(block)
    return not any(
        k % d == 0 and all(block[i] == block[i % d] for i in range(k)) for d in range(1, k)
    )


@settings(max_examples=500)
@given(st.lists(st.sampled_from("ab"), min_size=1, max_size=4),
       st.integers(1, 4), st.lists(st.sampled_from("abc"), max_size=12))
def test_primitive_equals_its_definition(unit: list[str], times: int, other: list[str]) -> None:
    from models.guardrails.loop import _primitive

    for block in (unit * times, other, unit * times + other[:1]):
        if block:
            assert _primitive(block) == _primitive_by_definition(block)
