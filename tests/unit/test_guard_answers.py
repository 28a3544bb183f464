"""Turning the guardrails script's flat answer into per-event state (ratchet.store.guardrails)."""

from __future__ import annotations

from models.guardrails import StateSpec
from ratchet.store.guardrails import GuardBatch, GuardItem, parse_answers

SPEC = StateSpec(agent_window_s=60, run_window_s=60, history=3, run_events=True,
                 run_cost=True, agent_daily_cost=True)


def test_run_nodes_come_from_the_stored_list_and_the_batch() -> None:
    items = [GuardItem("e5", "r1", 0, "n5"), GuardItem("x0", "r2", 0, "m0"),
             GuardItem("e6", "r1", 0, "n6"), GuardItem("e3", "r1", 0, "n3")]
    raw = [
        "0\t5\t9\t3\t1.5\t7.25",   # e5: new, 6th of r1
        "0\t0\t10\t1\t\t",          # x0: new, first of r2; sums not kept → None
        "0\t6\t11\t4\t2\t8",        # e6: new
        "1\t3\t4\t2\t1\t3",         # e3: redelivered, was 4th of r1
        "1\tn1\tn2\tn3\tn4",        # r1 held positions 1..4 before the batch
        "0",                        # r2 held nothing
    ]
    got = parse_answers(GuardBatch("t", items, SPEC), [r.encode() for r in raw])
    assert [a.duplicate for a in got] == [False, False, False, True]
    e5, x0, e6, e3 = (a.state for a in got)
    assert e5.run_nodes == ("n2", "n3", "n4") and e5.run_events == 6
    assert (e5.agent_events_in_window, e5.run_events_in_window) == (9, 3)
    assert (e5.run_cost, e5.agent_daily_cost) == (1.5, 7.25)
    assert x0.run_nodes == () and x0.run_cost is None and x0.agent_daily_cost is None
    assert e6.run_nodes == ("n3", "n4", "n5")  # e5's node, counted in this batch
    assert e3.run_nodes == ("n1", "n2") and e3.run_events == 4  # what it saw the first time
