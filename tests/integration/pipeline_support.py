"""Helpers of the end-to-end tests through HTTP (their ``stack`` fixture is in conftest.py)."""


from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import ChildProcess
from ratchet.store.keys import Keys

LOCKING_ENGINE = """
[engine]
checkpoint_runs = 2
min_runs_soft = 2
min_runs_locked = 4
stability = 1.0
stability_large = 1.0
"""


@dataclass
class Stack:
    client: RatchetClient
    redis_url: str
    keys: Keys
    gateway: ChildProcess
    worker: ChildProcess

    def logs(self) -> str:
        return f"--- gateway ---\n{self.gateway.log()[-3000:]}\n--- worker ---\n" \
               f"{self.worker.log()[-3000:]}"


def step_event(run: str, i: int, shape: str, *, end: bool = False) -> dict[str, Any]:
    payloads = {
        "a": {"ticket": 1, "text": "x"},
        "b": {"query": "refund", "limit": 5},
        "c": {"reply": "done", "close": True},
        "novel": {"export": {"table": "customers", "all": True}},
    }
    return {"event_id": str(uuid.uuid4()), "run_id": run, "service": "helpdesk",
            "action": f"step.{shape}", "priority": "critical", "payload": payloads[shape],
            "end_of_run": end}


def three_step_run(run: str) -> list[dict[str, Any]]:
    return [step_event(run, 0, "a"), step_event(run, 1, "b"), step_event(run, 2, "c", end=True)]


async def worker_ready(stack: Stack) -> None:
    """Probe (fresh event ids, own run) until the worker has joined its group and answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = {**step_event(f"probe-{uuid.uuid4().hex[:6]}", 0, "a", end=True),
                 "service": "probe"}  # its own chain
        answer = await stack.client.send(probe, wait_ms=2000)
        if answer.status == 200:
            return
        assert answer.status == 202, answer.body
    raise AssertionError("no verdict within 60 s\n" + stack.logs())


async def verdict_now(stack: Stack, event: dict[str, Any]) -> dict[str, Any]:
    answer = await stack.client.send(event, wait_ms=3000)
    assert answer.status == 200, (answer.status, answer.body, stack.logs())
    return dict(answer.body)
