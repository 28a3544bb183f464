"""Sandbox servers and child processes end with the process that started them, also when it
is killed outright (SIGKILL runs no ``finally``): ratchet/sandbox/lifetime.py."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratchet.sandbox.lifetime import die_with_parent

pytestmark = pytest.mark.kafka  # starts a Tansu broker

OWNER = """
import sys, time
from ratchet.sandbox.process import ChildProcess
from ratchet.sandbox.servers import RedisServer, TansuServer
redis = RedisServer().start()
broker = TansuServer().start()
child = ChildProcess(dict(__import__("os").environ), name="sleeper",
                     argv=("-c", "import time; time.sleep(120)")).start()
print(redis.proc.pid, broker.proc.pid, child.proc.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:  # a zombie waiting for its reaper is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_servers_and_children_end_when_their_owner_is_killed(tmp_path: Path) -> None:
    assert die_with_parent(), ("no setpriv with --pdeathsig (util-linux >= 2.33: "
                               "apt-get install -y util-linux)")
    pids: list[int] = []
    # the owner's temporary files (logs, Redis's directory) go to tmp_path: it cleans up nothing
    with subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "TMPDIR": str(tmp_path)}) as owner:
        try:
            assert owner.stdout is not None
            pids = [int(p) for p in owner.stdout.readline().split()]
            assert len(pids) == 3 and all(_alive(p) for p in pids)
            owner.send_signal(signal.SIGKILL)
            owner.wait(10)
            deadline = time.monotonic() + 15
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [p for p in pids if _alive(p)], "outlived their owner"
        finally:
            owner.kill()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
