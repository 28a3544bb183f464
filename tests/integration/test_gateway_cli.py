"""``ratchet projects create`` / ``ratchet agents create`` through ratchet.cli.gateway.register()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis.asyncio as aioredis

from ratchet.platform.provisioning import agent_secret, project_for_api_key
from ratchet.store.keys import Keys

# The lead hooks register() into ratchet/cli/__init__.py; until then, drive it with a bare parser.
_DRIVER = """
import argparse, sys
from ratchet.cli.gateway import register
from models.errors import RatchetError
p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="command"); register(sub)
args = p.parse_args(sys.argv[1:])
try:
    sys.exit(args.func(args))
except RatchetError as exc:
    print(f"error: {exc}", file=sys.stderr); sys.exit(2)
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", _DRIVER, *args], capture_output=True, text=True,
                          env=full, timeout=60)


def _field(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in output")


async def test_create_project_and_agent(redis_url: str, key_prefix: str,
                                        redis_client: aioredis.Redis) -> None:
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    done = _run(["projects", "create", "--name", "acme"], env)
    assert done.returncode == 0, done.stderr
    assert "shown once" in done.stderr
    project_id, api_key = _field(done.stdout, "project_id"), _field(done.stdout, "api_key")
    keys = Keys(key_prefix)
    assert await project_for_api_key(redis_client, keys, api_key) == project_id

    done = _run(["agents", "create", "--project", project_id, "--agent-id", "bot-1"], env)
    assert done.returncode == 0, done.stderr
    secret = _field(done.stdout, "agent_secret")
    assert await agent_secret(redis_client, keys, project_id, "bot-1") == secret

    again = _run(["agents", "create", "--project", project_id, "--agent-id", "bot-1"], env)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args", [["projects", "create", "--name", "x"],
                                  ["agents", "create", "--project", "prj_x"]])
def test_needs_redis_url(args: list[str]) -> None:
    done = _run(args, {})
    assert done.returncode == 2 and "RATCHET_REDIS_URL" in done.stderr
