"""Run a worker as a child process (used by ``ratchet demo``, the tests and the benchmarks).

The child runs ``python -m ratchet.cli.worker worker`` in its own process group with the given
``RATCHET_*`` environment; :meth:`WorkerProcess.stop` sends SIGTERM (graceful: finish the batch,
commit, leave the group) and escalates to SIGKILL; :meth:`WorkerProcess.kill` is ``kill -9``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import aiohttp

from models.errors import UnavailableError
from ratchet.sandbox.lifetime import die_with_parent

__all__ = [
    "FAST_GROUP_ENV", "ChildProcess", "WorkerProcess", "gateway_process", "wait_http_ready",
    "worker_env",
]

#: Consumer-group timings for tests and the demo (measured on Tansu, see docs/operations.md):
#: a group (re)join completes after ~rebalance timeout, a dead member is evicted after the
#: session timeout.
FAST_GROUP_ENV: Mapping[str, str] = {
    "RATCHET_BROKER_SESSION_TIMEOUT_S": "6",
    "RATCHET_BROKER_HEARTBEAT_INTERVAL_S": "1",
    "RATCHET_BROKER_REBALANCE_TIMEOUT_S": "5",
}


def worker_env(base: Mapping[str, str] | None = None, **ratchet: str | float) -> dict[str, str]:
    """The environment of a child process: ``base`` (default os.environ) + ``RATCHET_<K>=v``."""
    env = dict(os.environ if base is None else base)
    for name, value in ratchet.items():
        env[f"RATCHET_{name.upper()}"] = str(value)
    return env


@dataclass
class ChildProcess:
    """A Python child (``python <argv>``) in its own process group, output to a temp log file."""

    env: dict[str, str]
    name: str = "worker"
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""
    argv: tuple[str, ...] = ("-m", "ratchet.cli.worker", "worker")

    def start(self) -> Self:
        fd, self.log_path = tempfile.mkstemp(prefix=f"ratchet-{self.name}-", suffix=".log")
        self.proc = subprocess.Popen(
            [*die_with_parent(), sys.executable, *self.argv],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
        )
        os.close(fd)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """``kill -9`` the worker (and its process group) — fault injection."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def stop(self, timeout_s: float = 15.0, *, keep_log: bool = False) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; the log file is removed unless kept."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc is not None:
            # children the worker may have left in its group
            self._signal_group(signal.SIGKILL)
        if self.log_path and not keep_log:
            Path(self.log_path).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: A worker: ``python -m ratchet.cli.worker worker``.
WorkerProcess = ChildProcess

_GATEWAY = (
    "import sys; from ratchet.cli.gateway import main_gateway; "
    "from ratchet.config.settings import get_settings; "
    "from ratchet.telemetry.logs import setup_logging; s = get_settings(); "
    "setup_logging(s.log_level, s.log_format); sys.exit(main_gateway(s))"
)


def gateway_process(env: dict[str, str], name: str = "gateway") -> ChildProcess:
    """A gateway child (``ratchet.cli.gateway.main_gateway`` with the settings in ``env``)."""
    return ChildProcess(env, name=name, argv=("-c", _GATEWAY))


async def wait_http_ready(url: str, child: ChildProcess, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; raises UnavailableError (with the child's log tail)
    when the child exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not child.running:
                raise UnavailableError(f"the process exited while starting:\n{child.log()[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise UnavailableError(f"{url} was not ready within {timeout_s:.0f}s:\n{child.log()[-2000:]}")
