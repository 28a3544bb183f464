"""``ratchet projects create`` / ``ratchet agents create``, run as the ``ratchet`` command."""

from __future__ import annotations

import orjson
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


async def test_projects_list_shows_every_project_oldest_first_and_never_a_key(
    redis_url: str, key_prefix: str, redis_client: aioredis.Redis,
) -> None:
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    empty = ratchet_cli(["projects", "list"], env)
    assert empty.returncode == 0, empty.stderr
    assert "no projects yet" in empty.stdout
    made = []
    for name, tier in (("acme corp", None), ("beta", "standard")):
        done = ratchet_cli(["projects", "create", "--name", name,
                            *(["--tier", tier] if tier else [])], env)
        assert done.returncode == 0, done.stderr
        made.append((field(done.stdout, "project_id"), field(done.stdout, "api_key")))
    assert ratchet_cli(["agents", "create", "--project", made[0][0], "--agent-id", "a1"],
                       env).returncode == 0
    # a listed id whose project hash is gone is left out, not an error
    await redis_client.sadd(Keys(key_prefix).projects(), "prj_gone")

    done = ratchet_cli(["projects", "list", "--json"], env)
    assert done.returncode == 0, done.stderr
    rows = orjson.loads(done.stdout)
    assert [(r["project_id"], r["name"], r["tier"], r["agents"]) for r in rows] == [
        (made[0][0], "acme corp", None, 1), (made[1][0], "beta", "standard", 0)]
    assert rows[0]["created_at"] <= rows[1]["created_at"]

    table = ratchet_cli(["projects", "list"], env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["project", "tier", "agents", "created", "(UTC)", "name"]
    assert lines[1].split()[:3] == [made[0][0], "(free)", "1"] and lines[1].endswith("acme corp")
    assert lines[2].split()[:3] == [made[1][0], "standard", "0"]
    assert len(lines) == 3
    for _, api_key in made:
        assert api_key not in table.stdout + done.stdout


async def test_agents_list_shows_the_projects_agents_and_never_a_secret(
    redis_url: str, key_prefix: str,
) -> None:
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    project = field(ratchet_cli(["projects", "create", "--name", "p"], env).stdout, "project_id")
    other = field(ratchet_cli(["projects", "create", "--name", "q"], env).stdout, "project_id")
    none = ratchet_cli(["agents", "list", "--project", project], env)
    assert none.returncode == 0 and "no agents yet" in none.stdout, none.stderr
    secrets = []
    for agent in ("bot-1", "bot-2"):
        done = ratchet_cli(["agents", "create", "--project", project, "--agent-id", agent], env)
        secrets.append(field(done.stdout, "agent_secret"))
    ratchet_cli(["agents", "create", "--project", other, "--agent-id", "bot-9"], env)
    rotated = ratchet_cli(["agents", "rotate-secret", "--project", project, "--agent-id", "bot-2"],
                          env)
    assert rotated.returncode == 0, rotated.stderr
    secrets.append(field(rotated.stdout, "agent_secret"))

    done = ratchet_cli(["agents", "list", "--project", project, "--json"], env)
    assert done.returncode == 0, done.stderr
    rows = orjson.loads(done.stdout)
    assert [r["agent_id"] for r in rows] == ["bot-1", "bot-2"]
    assert "secret_rotated_at" not in rows[0] and "secret_rotated_at" in rows[1]
    table = ratchet_cli(["agents", "list", "--project", project], env)
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["bot-1", "bot-2"]
    for secret in secrets:
        assert secret not in done.stdout + table.stdout

    missing = ratchet_cli(["agents", "list", "--project", "prj_nope"], env)
    assert missing.returncode == 2 and "project prj_nope does not exist" in missing.stderr
