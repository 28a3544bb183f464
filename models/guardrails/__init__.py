"""Rule-based guardrails that run beside the Markov chain (docs/design.md §4). Pure: no I/O.

One module per guardrail (``velocity``, ``loop``, ``pattern``, ``pii``, ``cost``,
``entropy``, ``media``, ``order``, ``values``), each a config dataclass, its parser and a pure ``check_*`` function
returning :class:`models.verdict.Reason` objects with source ``guardrail:<name>``;
:mod:`~models.guardrails.policy` reads a project's TOML policy, :mod:`~models.guardrails.state`
states what Redis must keep, and :func:`evaluate` runs them all on one event.
"""

from __future__ import annotations

from models.guardrails.evaluate import evaluate, state_spec
from models.guardrails.policy import (
    GUARDRAILS,
    Guardrail,
    Policy,
    default_policy,
    parse_policy,
    parse_policy_toml,
    policy_from_dict,
    policy_hash,
    policy_to_dict,
)
from models.guardrails.state import EMPTY_STATE, GuardrailState, StateSpec

__all__ = [
    "EMPTY_STATE",
    "GUARDRAILS",
    "Guardrail",
    "GuardrailState",
    "Policy",
    "StateSpec",
    "default_policy",
    "evaluate",
    "parse_policy",
    "parse_policy_toml",
    "policy_from_dict",
    "policy_hash",
    "policy_to_dict",
    "state_spec",
]
