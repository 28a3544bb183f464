"""The answer objects of the guardrails script's reply, built slot by slot, equal the
keyword-built ones. (The reply's numbers are binary records now, read by ``struct``: the text
reader ``_int`` and its test are gone.)"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.guardrails import GuardrailState
from models.verdict_build import make_guardrail_state
from ratchet.store.guardrails import GuardAnswer, make_guard_answer


@given(st.text(max_size=5), st.lists(st.text(max_size=3), max_size=5).map(tuple),
       st.one_of(st.none(), st.integers()), st.one_of(st.none(), st.integers()),
       st.one_of(st.none(), st.integers()), st.one_of(st.none(), st.floats(allow_nan=False)),
       st.one_of(st.none(), st.floats(allow_nan=False)), st.booleans())
def test_builders_make_equal_frozen_objects(
    node: str, run_nodes: tuple[str, ...], run_events: int | None, agent: int | None,
    run_w: int | None, run_cost: float | None, daily: float | None, duplicate: bool,
) -> None:
    fast = make_guard_answer(duplicate, make_guardrail_state(
        node, run_nodes, run_events, agent, run_w, run_cost, daily))
    slow = GuardAnswer(duplicate=duplicate, state=GuardrailState(
        node=node, run_nodes=run_nodes, run_events=run_events, agent_events_in_window=agent,
        run_events_in_window=run_w, run_cost=run_cost, agent_daily_cost=daily))
    assert fast == slow and hash(fast) == hash(slow) and type(fast.state) is GuardrailState
    try:
        fast.state.node = "x"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("the built state is not frozen")


@given(st.text(max_size=5), st.text(max_size=5), st.integers(), st.text(max_size=5),
       st.one_of(st.none(), st.floats(allow_nan=False)))
def test_guard_item_builder(event_id: str, run_id: str, t_ms: int, node: str,
                            cost: float | None) -> None:
    from ratchet.store.guardrails import GuardItem, make_guard_item

    fast = make_guard_item(event_id, run_id, t_ms, node, cost, node)
    assert fast == GuardItem(event_id, run_id, t_ms, node, cost, node) and type(fast) is GuardItem


NODES = st.one_of(st.text(max_size=12), st.text(alphabet="0123456789abcdef", min_size=16,
                                                max_size=16), st.text(min_size=251, max_size=260))


@given(st.lists(NODES, min_size=1, max_size=8))
def test_entries_remembered_per_node_equal_the_definition(nodes: list[str]) -> None:
    """A run entry (length byte + stored form) is remembered per node: the same bytes as
    computed, whether first seen, seen again, or after the memo was emptied at its bound."""
    from ratchet.store import guardrails as g

    for round_ in range(3):
        if round_ == 2:
            g._ENTRIES.clear()
        for node in nodes:
            stored = g.stored_node(node)
            assert g._entry(node) == bytes((len(stored),)) + stored


def test_entry_memo_is_bounded() -> None:
    from ratchet.store import guardrails as g

    g._ENTRIES.clear()
    for i in range(g._ENTRIES_MAX + 10):
        g._entry(f"n{i}")
    assert len(g._ENTRIES) <= g._ENTRIES_MAX
    assert g._entry("n3") == b"\x02n3"
