"""Cheap construction of :class:`models.verdict.Verdict` and :class:`~models.verdict.Edge`
(and of the guardrail state, :class:`models.guardrails.state.GuardrailState`, one per event
too) for the engine's hot loop. Pure: no I/O.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__`` (the
frozen class refuses plain assignment), and a call by keyword adds the keyword matching: ≈ 3 µs
per verdict for the 19 fields. These builders make the *same* objects — same class, same field
values, equal and hashing alike, still frozen afterwards — by writing each slot through its slot
descriptor directly, in positional order, with the writes unrolled. The public model and the
wire format are untouched; ``tests/unit/test_verdict_build.py`` compares field by field.

>>> from models.verdict import Edge, Verdict
>>> e = make_edge("a", "b", 0.5, 1.0, 2.0)
>>> e == Edge("a", "b", 0.5, 1.0, 2.0)
True
>>> v = make_verdict("e1", "ag", "r1", "p/ag/s", "shadow", False, 0.1, 9.0, e, "allow", (),
...                  1.5, "", "p", "tag", "", False, False)
>>> v == Verdict("e1", "ag", "r1", "p/ag/s", "shadow", False, 0.1, 9.0, e, "allow", (), 1.5,
...              "", "p", "tag", "", False, False)
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from models.guardrails.order import OrderFinding, StreakFinding
from models.guardrails.state import GuardrailState
from models.guardrails.values import ValueFinding
from models.verdict import Edge, Reason, Verdict

__all__ = ["make_edge", "make_guardrail_state", "make_verdict", "slot_builder"]


def slot_builder(cls: type, name: str) -> Callable[..., Any]:
    """:func:`_builder` for another frozen, slotted dataclass of a hot loop."""
    return _builder(cls, name)


def _builder(cls: type, name: str) -> Callable[..., Any]:
    """A function taking ``cls``'s fields positionally (defaults as in the class) and writing
    each slot through its descriptor: generated once, with the writes unrolled."""
    fields = dataclasses.fields(cls)
    params, body = [], []
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    for i, f in enumerate(fields):
        env[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            env[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        elif f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: a default factory is not supported")
        else:
            params.append(f.name)
        body.append(f"    _set{i}(obj, {f.name})")
    src = f"def {name}({', '.join(params)}):\n    obj = _new(_cls)\n" + "\n".join(body)
    src += "\n    return obj\n"
    exec(src, env)  # noqa: S102 - generated from the dataclass's own field names
    fn: Callable[..., Any] = env[name]
    fn.__doc__ = f"``{cls.__name__}(...)`` with positional fields, built slot by slot."
    return fn


if TYPE_CHECKING:  # the signatures mypy checks; at run time the generated builders

    def make_verdict(
        event_id: str,
        agent_id: str,
        run_id: str,
        chain: str,
        mode: str,
        anomalous: bool,
        score: float,
        threshold: float,
        edge: Edge,
        action: str,
        reasons: tuple[Reason, ...],
        decided_at: float,
        trace_id: str = "",
        project_id: str = "",
        chain_tag: str = "",
        mode_change: str = "",
        duplicate: bool = False,
        held: bool = False,
        error: str | None = None,
    ) -> Verdict:
        """Exactly ``Verdict(...)`` with the same positional arguments (the class's field
        order)."""

    def make_edge(from_node: str, to_node: str, p: float, count: float, row_total: float) -> Edge:
        """Exactly ``Edge(from_node, to_node, p, count, row_total)``."""

    def make_guardrail_state(
        node: str = "",
        run_nodes: tuple[str, ...] = (),
        run_events: int | None = None,
        agent_events_in_window: int | None = None,
        run_events_in_window: int | None = None,
        run_cost: float | None = None,
        agent_daily_cost: float | None = None,
        order: OrderFinding | None = None,
        streak: StreakFinding | None = None,
        values: tuple[ValueFinding, ...] = (),
    ) -> GuardrailState:
        """Exactly ``GuardrailState(...)`` with the same positional arguments."""

else:
    make_verdict = _builder(Verdict, "make_verdict")
    make_edge = _builder(Edge, "make_edge")
    make_guardrail_state = _builder(GuardrailState, "make_guardrail_state")
