"""A ``ratchet`` command whose stdout reader went away (``ratchet projects list | head -1``)
ends quietly with status 141 (128 + SIGPIPE), as ``cat`` or ``grep`` do — not "Redis is
unavailable (BrokenPipeError)", exit 2, as before: a closed pipe raises BrokenPipeError, a
ConnectionError, which the CLI took for a Redis failure.

The read end of the child's stdout pipe is closed before the child writes (it is still
importing), so its first flush fails; the output is larger than the pipe's buffer either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from redis.asyncio import Redis

from ratchet.platform.provisioning import create_project
from ratchet.sandbox.traffic import generate
from ratchet.store.keys import Keys


def _run_with_closed_stdout(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    full.update(env)
    child = subprocess.Popen([sys.executable, "-m", "ratchet", *args], env=full,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # nobody reads stdout any more
    stderr = child.stderr.read().decode()
    return child.wait(timeout=60), stderr


async def test_projects_list_into_a_closed_pipe_exits_141_quietly(
    redis_client: Redis, redis_url: str, keys: Keys, key_prefix: str
) -> None:
    for i in range(300):  # ≈ 25 kB of table: more than stdout's 8 kB buffer
        await create_project(redis_client, keys, f"pipe-{i:03d}")
    status, stderr = _run_with_closed_stdout(
        ["projects", "list"], {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix})
    assert (status, stderr) == (141, "")


def test_replay_to_a_closed_stdout_exits_141_quietly(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    rows = generate(agents=2, runs_per_agent=15, warmup_runs=5, seed=2)
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in rows))
    status, stderr = _run_with_closed_stdout(
        ["replay", "--input", str(events), "--output", "-", "--quiet"], {})
    assert status == 141, stderr
    assert "error" not in stderr and "Traceback" not in stderr
