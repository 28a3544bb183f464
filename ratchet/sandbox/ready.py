"""Waiting until a freshly started worker decides events (the demo and the sandbox stack).

A gateway answers ``/readyz`` as soon as Kafka and Redis answer it, but the worker decides
nothing until it has joined its consumer group and been given partitions — two to four seconds
after start on Tansu. Callers that start a stack wait here, with probe events of a project of
their own, so the first event a user sends is decided like every later one.
"""

from __future__ import annotations

import time
import uuid

from models.errors import UnavailableError
from ratchet.sandbox.client import RatchetClient
from ratchet.sandbox.process import ChildProcess

__all__ = ["wait_worker"]


async def wait_worker(client: RatchetClient, worker: ChildProcess, timeout_s: float) -> float:
    """Send probe events (``client``'s own project) until one comes back with a verdict;
    returns the seconds it took. Raises :class:`UnavailableError` with the worker's log tail
    when the worker exits or gives no verdict within ``timeout_s``."""
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < timeout_s:
        if not worker.running:
            raise UnavailableError(f"the worker exited while starting:\n{worker.log()[-2000:]}")
        n += 1
        answer = await client.send(
            {"event_id": str(uuid.uuid4()), "run_id": f"probe-{n}", "service": "probe",
             "action": "ping", "payload": {}, "end_of_run": True},
            wait_ms=1000,
        )
        if answer.status == 200:
            return time.monotonic() - started
    raise UnavailableError(
        f"the worker gave no verdict within {timeout_s:.0f}s:\n{worker.log()[-2000:]}")
