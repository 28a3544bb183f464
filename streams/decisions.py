"""The decision log: one structured line per non-allow verdict and per chain mode change.

Why: metrics carry no project or agent (bounded cardinality), so "which agent is being blocked,
and why?" is answered here. The worker that produced the verdicts writes the lines (logger
``ratchet.decisions``) and, when ``RATCHET_TOPIC_DECISIONS`` is set, the same JSON to that Kafka
topic keyed by project. Replays of an already-decided event (``duplicate``) are not logged again.

Fields of a ``decision`` line: ``project``, ``agent``, ``run``, ``chain``, ``event_id``,
``trace_id``, ``action``, ``mode``, ``anomalous``, ``score`` and ``threshold`` (bits), ``held``
and ``reasons`` (``[{source, action}]``; rule details stay in the verdict, which may quote
payload values). A ``mode_change`` line: ``project``, ``agent``, ``chain``, ``mode`` (the new
mode), ``change`` (``soft_lock``, ``locked`` or ``locked(forced)``), ``event_id``, ``trace_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from models.verdict import Verdict

__all__ = ["DECISION_LOGGER", "decision_records", "log_records"]

#: The logger every decision line goes to.
DECISION_LOGGER = "ratchet.decisions"

log = logging.getLogger(DECISION_LOGGER)


def _decision(v: Verdict) -> dict[str, Any]:
    return {
        "kind": "decision",
        "project": v.project_id,
        "agent": v.agent_id,
        "run": v.run_id,
        "chain": v.chain,
        "event_id": v.event_id,
        "trace_id": v.trace_id,
        "action": v.action,
        "mode": v.mode,
        "anomalous": v.anomalous,
        "score": round(v.score, 4),
        "threshold": round(v.threshold, 4),
        "held": v.held,
        "reasons": [{"source": r.source, "action": r.action} for r in v.reasons],
    }


def _mode_change(v: Verdict) -> dict[str, Any]:
    return {
        "kind": "mode_change",
        "project": v.project_id,
        "agent": v.agent_id,
        "chain": v.chain,
        "mode": v.mode,
        "change": v.mode_change,
        "event_id": v.event_id,
        "trace_id": v.trace_id,
    }


def decision_records(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    """The decision-log records of ``verdicts`` (mode change first when an event has both).

    >>> import dataclasses
    >>> from models.verdict import Edge
    >>> v = Verdict("e1", "a", "r", "c", "locked", True, 20.0, 12.0, Edge("x", "y", 0.0, 0, 0),
    ...             "pause", (), 0.0, project_id="p", mode_change="locked")
    >>> [r["kind"] for r in decision_records([v, dataclasses.replace(v, duplicate=True)])]
    ['mode_change', 'decision']
    """
    out: list[dict[str, Any]] = []
    for v in verdicts:
        if v.duplicate:
            continue
        if v.mode_change:
            out.append(_mode_change(v))
        if v.action != "allow":
            out.append(_decision(v))
    return out


def log_records(records: Iterable[dict[str, Any]]) -> None:
    """Write ``records`` to the ``ratchet.decisions`` logger (INFO; one line each)."""
    if not log.isEnabledFor(logging.INFO):
        return
    for record in records:
        log.info(record["kind"].replace("_", " "), extra=record)

