"""``ratchet projects create`` / ``ratchet agents create``, run as the ``ratchet`` command."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from ratchet.platform.provisioning import agent_secret, project_for_api_key
from ratchet.store.keys import Keys
from tests.integration.cli_support import field, ratchet_cli


async def test_create_project_and_agent(redis_url: str, key_prefix: str,
                                        redis_client: aioredis.Redis) -> None:
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    done = ratchet_cli(["projects", "create", "--name", "acme"], env)
    assert done.returncode == 0, done.stderr
    assert "shown once" in done.stderr
    project_id, api_key = field(done.stdout, "project_id"), field(done.stdout, "api_key")
    keys = Keys(key_prefix)
    assert await project_for_api_key(redis_client, keys, api_key) == project_id

    done = ratchet_cli(["agents", "create", "--project", project_id, "--agent-id", "bot-1"], env)
    assert done.returncode == 0, done.stderr
    secret = field(done.stdout, "agent_secret")
    assert await agent_secret(redis_client, keys, project_id, "bot-1") == secret

    again = ratchet_cli(["agents", "create", "--project", project_id, "--agent-id", "bot-1"], env)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize("args", [["projects", "create", "--name", "x"],
                                  ["agents", "create", "--project", "prj_x"]])
def test_needs_redis_url(args: list[str]) -> None:
    done = ratchet_cli(args, {})
    assert done.returncode == 2 and "RATCHET_REDIS_URL" in done.stderr
