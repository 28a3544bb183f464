"""The pure detection rules (models/scoring.py, modes.py, decay.py, tuning.py) on their own:
properties every input must satisfy, and the cases each rule exists for."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.decay import decay_count, row_totals
from models.modes import LOCKED, SHADOW, SOFT_LOCK, distribution_change, is_unlearnable, next_mode
from models.params import COUNT_SCALE, EngineParams
from models.reference import ReferenceChain
from models.scoring import (
    action_judged,
    backoff_probability,
    is_anomalous,
    needs_backoff,
    robust_stats,
    score,
    threshold,
)
from models.tuning import tune

P = EngineParams()
counts = st.integers(1, 10_000_000)
rates = st.integers(0, 200_000)


# --- decay ------------------------------------------------------------------------------------
@given(a=counts, b=counts, rate=rates)
def test_uniform_decay_keeps_order_and_ratio(a: int, b: int, rate: int) -> None:
    da = decay_count(a, (rate, rate, rate), COUNT_SCALE, uniform=True)
    db = decay_count(b, (rate, rate, rate), COUNT_SCALE, uniform=True)
    assert da <= a and db <= b
    if a <= b:
        assert da <= db
    # the ratio moves only by integer rounding (< 1 unit on each count): with the exact
    # decayed values ea, eb (ratio a / b), da is in [ea, ea + 1) and db in [eb, eb + 1)
    keep = 1 - rate / 1_000_000
    ea, eb = a * keep, b * keep
    assert ea / (eb + 1) - 1e-12 <= da / db <= (ea + 1) / eb + 1e-12


def test_uniform_decay_takes_the_same_fraction_of_a_rare_and_a_frequent_edge() -> None:
    ppm = (10_000, 10_000, 10_000)
    rare, busy = 1 * COUNT_SCALE, 100 * COUNT_SCALE
    assert decay_count(rare, ppm, COUNT_SCALE, uniform=True) / rare == pytest.approx(0.99)
    assert decay_count(busy, ppm, COUNT_SCALE, uniform=True) / busy == pytest.approx(0.99)


def test_tiered_decay_inflates_rare_edges() -> None:
    """The seeds' rule: a seen-once edge keeps its count while a busy one loses 1 %, so over
    many checkpoints the rare edge's probability grows (what cost HDFS recall)."""
    ppm = (1_000, 2_500, 10_000)
    rare, busy = COUNT_SCALE, 100 * COUNT_SCALE
    for _ in range(100):
        rare = decay_count(rare, ppm, COUNT_SCALE)
        busy = decay_count(busy, ppm, COUNT_SCALE)
    assert rare == COUNT_SCALE
    assert rare / (rare + busy) > 2.5 * (1 / 101)


@given(edges=st.dictionaries(st.tuples(st.sampled_from("abc"), st.sampled_from("abc$")).map(
    "\t".join), counts))
def test_row_totals_are_sums_of_edges(edges: dict[str, int]) -> None:
    rows = row_totals(edges)
    assert sum(rows.values()) == sum(edges.values())
    for src, total in rows.items():
        assert total == sum(c for e, c in edges.items() if e.startswith(src + "\t"))


# --- scoring ----------------------------------------------------------------------------------
@given(p=st.floats(0, 1), q=st.floats(0, 1))
def test_score_is_decreasing_in_p(p: float, q: float) -> None:
    if p < q:
        assert score(p, 1e-6) >= score(q, 1e-6)
    assert abs(score(1.0, 1e-6)) < 1e-5 and score(0.0, 1e-6) == pytest.approx(19.93, abs=0.01)


@given(recent=st.lists(st.floats(0, 20), min_size=0, max_size=20), floor=st.floats(0, 15),
       robust=st.booleans())
def test_threshold_never_under_the_floor(recent: list[float], floor: float, robust: bool) -> None:
    t = threshold(recent, window=10, sigma=3.0, fallback=5.0, floor=floor, robust=robust)
    assert t >= floor
    if len(recent) < 10:
        assert t == max(floor, 5.0)


def test_robust_window_ignores_one_outlier() -> None:
    assert robust_stats([0.5] * 9 + [11.9]) == (0.5, 0.0)


@given(p_fine=st.floats(0, 1), weight=st.floats(0, 1), a=st.integers(0, 100),
       ar=st.integers(0, 100), n=st.integers(0, 100), nr=st.integers(0, 100))
def test_backoff_never_lowers_p_and_stays_a_probability(
    p_fine: float, weight: float, a: int, ar: int, n: int, nr: int
) -> None:
    a, n = min(a, ar), min(n, nr)
    p = backoff_probability(p_fine, weight=weight, act_count=a, act_row=ar, node_count=n,
                            node_row=nr)
    assert p_fine <= p <= 1.0
    if weight == 0 or ar == 0 or nr == 0:
        assert p == p_fine


def test_backoff_separates_a_rare_shape_from_an_unseen_step_order() -> None:
    # crm.read → mail.send seen 90 times of 100; the shape is 1 of crm.read's 10
    rare_shape = backoff_probability(0.0, weight=1.0, act_count=90, act_row=100, node_count=1,
                                     node_row=10)
    swapped = backoff_probability(0.0, weight=1.0, act_count=0, act_row=100, node_count=1,
                                  node_row=10)
    assert score(rare_shape, 1e-6) < 4
    assert score(swapped, 1e-6) > 12


def test_needs_backoff_only_for_unseen_edges_or_thin_rows() -> None:
    assert needs_backoff(0, 10**6, min_support=20, scale=COUNT_SCALE)
    assert needs_backoff(1000, 19_000, min_support=20, scale=COUNT_SCALE)
    assert not needs_backoff(1000, 20_000, min_support=20, scale=COUNT_SCALE)


@given(bits=st.floats(0, 20), limit=st.floats(0, 20), row=st.integers(0, 10**6),
       new=st.booleans(), ms=st.integers(0, 50), unl=st.booleans())
def test_anomalous_only_over_the_limit_and_new_nodes_always_count(
    bits: float, limit: float, row: int, new: bool, ms: int, unl: bool
) -> None:
    got = is_anomalous(bits, limit, row_total=row, to_is_new=new, min_support=ms,
                       scale=COUNT_SCALE, unlearnable=unl)
    if bits <= limit:
        assert not got
    elif new:
        assert got
    elif unl:
        assert not got


# --- modes ------------------------------------------------------------------------------------
@given(mode=st.sampled_from([SHADOW, SOFT_LOCK, LOCKED]), runs=st.integers(0, 2000),
       change=st.floats(0, 1), eligible=st.booleans(), unl=st.booleans(),
       lock=st.booleans())
def test_modes_only_tighten_and_unlearnable_never_locks(
    mode: int, runs: int, change: float, eligible: bool, unl: bool, lock: bool
) -> None:
    params = P.replace(lock_when_stable=lock)
    new, forced = next_mode(mode, runs=runs, change=change, eligible=eligible, params=params,
                            unlearnable=unl)
    assert new >= mode
    if new == LOCKED and mode != LOCKED:
        assert not unl and runs >= params.min_runs_locked
        assert eligible or (lock and not forced)
    if forced:
        assert eligible


def test_any_stable_chain_locks_by_default_but_not_under_the_seeds_rule() -> None:
    assert next_mode(SOFT_LOCK, runs=100, change=0.0, eligible=False, params=P) == (LOCKED, False)
    seeds = P.replace(lock_when_stable=False)
    assert next_mode(SOFT_LOCK, runs=100, change=0.0, eligible=False, params=seeds) == (
        SOFT_LOCK, False)


@given(new=st.integers(0, 1000), seen=st.integers(0, 1000), runs=st.integers(0, 200))
def test_unlearnable_is_the_rate_over_the_fixed_limit(new: int, seen: int, runs: int) -> None:
    new = min(new, seen)
    got = is_unlearnable(new, seen, runs=runs, params=P)
    assert got == (runs >= P.min_runs_soft and seen > 0 and new / seen > 0.05)
    assert not is_unlearnable(new, seen, runs=runs, params=P.replace(novelty_limit=0.0))


def test_distribution_change_bounds() -> None:
    assert distribution_change({"a\tb": 5}, {"a\tb": 7}) == 0.0
    assert distribution_change({"a\tb": 5}, {"a\tc": 7}) == 1.0
    assert distribution_change({"a\tb": 5}, {}) == 1.0
    assert 0 < distribution_change({"a\tb": 5, "a\tc": 5}, {"a\tb": 5}) < 1


# --- tuning -----------------------------------------------------------------------------------
@given(sigma=st.floats(P.sigma_min, P.sigma_max), fb=st.floats(P.fallback_min, P.fallback_max),
       decisions=st.lists(st.sampled_from(["approve", "reject"]), max_size=60))
def test_tuning_stays_within_bounds(sigma: float, fb: float, decisions: list[str]) -> None:
    for d in decisions:
        new_sigma, new_fb = tune(sigma, fb, d, P)
        if d == "approve":
            assert new_sigma >= sigma and new_fb >= fb
        else:
            assert new_sigma <= sigma and new_fb <= fb
        sigma, fb = new_sigma, new_fb
        assert P.sigma_min <= sigma <= P.sigma_max
        assert P.fallback_min <= fb <= P.fallback_max
        assert math.isfinite(sigma) and math.isfinite(fb)


def test_tuning_rejects_an_unknown_decision() -> None:
    with pytest.raises(ValueError, match="approve or reject"):
        tune(3.0, 3.0, "maybe", P)


# --- unlearnable chains judged on their step order (unlearnable_rule) -------------------------
def _entropic_chain(rule: str, runs: int) -> ReferenceChain:
    """A chain whose every call has a fresh shape (unlearnable) while its steps always go
    read → write → END (a learnable step order)."""
    chain = ReferenceChain(P.replace(unlearnable_rule=rule), locked_action="pause")
    k = 0
    for r in range(runs):
        for act, eor in (("crm.read", False), ("crm.write", True)):
            k += 1
            chain.observe(f"e{k}", f"r{r}", f"shape{k}", end_of_run=eor, action=act)
    return chain


@pytest.mark.parametrize("rule", ["actions", "both", "shapes"])
def test_an_unlearnable_chain_with_a_learnable_step_order_is_judged_on_it(rule: str) -> None:
    chain = _entropic_chain(rule, 120)
    assert chain.unlearnable and chain.mode != LOCKED
    assert chain.by_action == (rule != "shapes")
    # a swapped step (write first) reaching a shape seen before, and a new shape of a known step
    known = next(iter(chain.nodes))
    swapped = chain.observe("x1", "rx", known, action="crm.write")
    fresh = chain.observe("x2", "ry", "shape-new", action="crm.read")
    assert swapped.anomalous == (rule != "shapes")
    assert fresh.anomalous == (rule != "actions")
    if rule != "shapes":
        # it left shadow by volume, and past min_runs_locked what it flags is held back
        assert chain.mode == SOFT_LOCK and swapped.action == "flag" and swapped.held
    else:
        assert chain.mode == SHADOW and fresh.action == "allow"


def test_action_judged_only_over_the_floor() -> None:
    kw = {"epsilon": 1e-6, "floor": 12.0}
    assert action_judged(False, act_count=0, act_row=0, rule="actions", **kw)
    assert not action_judged(False, act_count=1000, act_row=4_000_000, rule="actions", **kw)
    assert action_judged(False, act_count=1000, act_row=5_000_000, rule="actions", **kw)
    assert action_judged(True, act_count=1000, act_row=1000, rule="both", **kw)
    assert not action_judged(True, act_count=1000, act_row=1000, rule="actions", **kw)


# --- the escape floor (escape_floor_bits) -----------------------------------------------------
def _varied_chain(escape_floor: float) -> ReferenceChain:
    """A chain whose step crm.read is busy (600 calls) and sends three shapes over two key paths
    plus an optional third, so a shape bringing one more key path gets a finite escape."""
    chain = ReferenceChain(P.replace(escape_floor_bits=escape_floor), locked_action="pause")
    shapes = [("s0", "0000000a"), ("s1", "0000000a,0000000b"), ("s2", "0000000a,0000000c")]
    k = 0
    for r in range(300):
        for i, eor in ((0, False), (1 if r % 3 else 2, True)):
            k += 1
            node, paths = shapes[0] if i == 0 else shapes[i]
            chain.observe(f"e{k}", f"r{r}", node, end_of_run=eor, action="crm.read", paths=paths)
    return chain


def test_a_shape_scored_by_the_escape_needs_the_escape_floor() -> None:
    base, floored = _varied_chain(0.0), _varied_chain(19.0)
    # one key path new to a busy, varied step: a finite escape score over the 12-bit floor
    # (about 14.8 bits here: its shape escape, field escape and step move, counts decayed)
    new_field = {"action": "crm.read", "paths": "0000000a,0000000d"}
    a = base.observe("x1", "rx", "s9", **new_field)
    b = floored.observe("x1", "rx", "s9", **new_field)
    assert a.backoff and 12.0 < a.score < 19.0 and a.anomalous and a.threshold == 12.0
    assert b.score == a.score and not b.anomalous and b.threshold == 19.0
    # a shape of a step the chain never saw has no escape: the escape floor does not apply
    c = floored.observe("x2", "ry", "s10", action="mail.send", paths="0000000e")
    assert c.anomalous and c.score > 19.9 and c.threshold == 12.0
