"""What the engine tests on one crm chain share: small locking parameters and a run builder."""

from __future__ import annotations

import uuid

from models.events import IngestEvent
from models.params import EngineParams

# Small numbers: a chain of identical runs is locked after a few runs.
FAST = EngineParams(checkpoint_runs=1, min_runs_soft=3, min_runs_locked=6, stability=0.5,
                    stability_large=0.5)


def crm_run(run: str, steps: list[tuple[str, dict[str, object]]],
            agent: str = "a") -> list[IngestEvent]:
    """One run of ``agent`` on the crm service: ``contacts.<action>`` events, the last ending it."""
    return [IngestEvent(event_id=uuid.uuid4().hex, agent_id=agent, run_id=run, service="crm",
                        action=f"contacts.{action}", payload=payload, project_id="p",
                        end_of_run=i == len(steps) - 1)
            for i, (action, payload) in enumerate(steps)]
