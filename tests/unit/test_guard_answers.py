"""Turning the guardrails script's flat answer into per-event state (ratchet.store.guardrails)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import StoreError
from models.guardrails import StateSpec
from ratchet.store.guardrails import (
    RECORD,
    GuardBatch,
    GuardItem,
    _entry,
    _parse_sparse,
    node_text,
    parse_answers,
    stored_node,
)


def _rec(status: int, pos: int, agent: int | None, run: int | None, run_cost: float | None,
         agent_cost: float | None) -> bytes:
    """One event's record as lua/guardrails.lua replies it (None = not kept)."""
    values = (agent, run, run_cost, agent_cost)
    present = sum(1 << i for i, v in enumerate(values) if v is not None)
    return RECORD.pack(status, present, pos, *(0 if v is None else v for v in values))


SPEC = StateSpec(agent_window_s=60, run_window_s=60, history=3, run_events=True,
                 run_cost=True, agent_daily_cost=True)


def test_run_nodes_come_from_the_stored_list_and_the_batch() -> None:
    items = [GuardItem("e5", "r1", 0, "n5"), GuardItem("x0", "r2", 0, "m0"),
             GuardItem("e6", "r1", 0, "n6"), GuardItem("e3", "r1", 0, "n3")]
    raw = [
        _rec(0, 5, 9, 3, 1.5, 7.25),       # e5: new, 6th of r1
        _rec(0, 0, 10, 1, None, None),     # x0: new, first of r2; sums not kept → None
        _rec(0, 6, 11, 4, 2, 8),           # e6: new
        _rec(1, 3, 4, 2, 1, 3),            # e3: redelivered, was 4th of r1
    ]
    runs = [
        [b"1", b"\2n1\2n2\2n3\2n4"],  # r1 held positions 1..4 before the batch
        [b"0", b""],                    # r2 held nothing
    ]
    got = parse_answers(GuardBatch("t", items, SPEC), [b"".join(raw), b"", *runs])
    assert [a.duplicate for a in got] == [False, False, False, True]
    e5, x0, e6, e3 = (a.state for a in got)
    assert e5.run_nodes == ("n2", "n3", "n4") and e5.run_events == 6
    assert (e5.agent_events_in_window, e5.run_events_in_window) == (9, 3)
    assert (e5.run_cost, e5.agent_daily_cost) == (1.5, 7.25)
    assert x0.run_nodes == () and x0.run_cost is None and x0.agent_daily_cost is None
    assert e6.run_nodes == ("n3", "n4", "n5")  # e5's node, counted in this batch
    assert e3.run_nodes == ("n1", "n2") and e3.run_events == 4  # what it saw the first time


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.booleans(),
                          st.integers(0, 30)), min_size=1, max_size=25),
       st.dictionaries(st.sampled_from(["r1", "r2", "r3"]), st.integers(0, 40)),
       st.integers(0, 6))
def test_slices_of_contiguous_nodes_equal_the_per_position_reading(
    events: list[tuple[str, bool, int]], stored: dict[str, int], history: int
) -> None:
    """Answers shaped as the script gives them (new events take the run's next positions,
    redeliveries an earlier one; each run's list holds its last 2 × history nodes): the fast
    parse (one list per run, slices) equals the per-position reading it replaced."""
    spec = StateSpec(agent_window_s=60, run_window_s=60, history=history, run_events=True,
                     run_cost=True, agent_daily_cost=True)
    keep = 2 * history
    count = {r: stored.get(r, 0) for r in ("r1", "r2", "r3")}
    before = dict(count)
    items, rows = [], []
    for i, (run, redelivered, back) in enumerate(events):
        if redelivered and count[run]:
            pos = max(0, count[run] - 1 - back)
            rows.append(_rec(1, pos, 1, 1, 1, 1))
        else:
            pos = count[run]
            count[run] += 1
            rows.append(_rec(0, pos, 1, 1, 0.5, None))
        items.append(GuardItem(f"e{i}", run, 0, f"{run}n{pos}" if rows[-1][0] == 0 else "x"))
    lines = []
    for run in dict.fromkeys(item.run_id for item in items):
        held = min(before[run], keep)
        first = before[run] - held
        lines.append([str(first).encode(),
                      b"".join(_entry(f"{run}n{p}") for p in range(first, before[run]))])
    batch = GuardBatch("t", items, spec)
    raw = [b"".join(rows), b"", *lines]
    assert parse_answers(batch, raw) == _parse_sparse(batch, raw)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(min_size=8, max_size=8).map(bytes.hex), st.text(max_size=60)))
def test_a_stored_node_reads_back_as_itself(node: str) -> None:
    """Hex nodes are kept as 8 raw bytes, any other text so that it never passes for them —
    and the hex text the previous release kept reads as itself."""
    stored = stored_node(node)
    assert node_text(stored) == node
    assert (len(stored) == 8) == (len(node) == 16 and all(c in "0123456789abcdef" for c in node))
    assert node_text(node.encode()) == node or len(node.encode()) == 8 or node.startswith("\0t")


def test_a_node_too_long_for_one_length_byte_is_kept_by_its_hash() -> None:
    long, other = "x" * 300, "x" * 299 + "y"
    assert len(_entry(long)) == 9 and _entry(long) == _entry(long) != _entry(other)
    assert node_text(stored_node(long)) == node_text(stored_node(long)) != long


def test_a_reply_of_another_length_is_refused() -> None:
    items = [GuardItem("e1", "r1", 0, "n1"), GuardItem("e2", "r1", 0, "n2")]
    raw = [_rec(0, 0, 1, 1, None, None), b"", [b"0", b""]]  # one record for two events
    with pytest.raises(StoreError, match="16 bytes|42 bytes"):
        parse_answers(GuardBatch("t", items, SPEC), raw)
