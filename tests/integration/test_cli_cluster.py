"""The operator walk-through of docs/api.md and docs/deploy.md, step by step, as the ``ratchet``
command against a 3-master Redis Cluster (``RATCHET_REDIS_CLUSTER=1``, one seed node).

Projects (create, list), agents, scoped keys (create, list, rotate, revoke), the project key's rotation, agent
secret rotation, ``set-tier`` and the audit log (verify, export). After every step the state is
read back through a cluster client: new credentials are live, replaced ones are dead and their
records gone, and the audit chain verifies. Without the cluster setting, the same command (and a
gateway's request) fails with a message naming it, never a redis-py traceback.
"""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from models.scopes import Grant
from ratchet.config.settings import Settings
from ratchet.platform.api_keys import grant_for_api_key
from ratchet.platform.provisioning import agent_secret, hash_api_key, project_for_api_key
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.keys import Keys
from ratchet.store.redis import connect
from tests.integration.cli_support import field, ratchet_cli
from tests.integration.gateway_support import own_gateway

Run = Callable[..., Coroutine[Any, Any, subprocess.CompletedProcess[str]]]


def _runner(env: dict[str, str]) -> Run:
    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = await asyncio.to_thread(ratchet_cli, list(args), env)
        assert "Traceback" not in done.stderr, done.stderr
        return done
    return run


async def test_walkthrough_on_cluster(redis_cluster: RedisClusterServer, key_prefix: str) -> None:
    env = {"RATCHET_REDIS_URL": redis_cluster.url, "RATCHET_REDIS_CLUSTER": "1",
           "RATCHET_KEY_PREFIX": key_prefix}
    run = _runner(env)
    keys = Keys(key_prefix)
    client = connect(redis_cluster.url, cluster=True)
    await client.initialize()
    try:
        # projects create, several times (each lands on its own slots)
        made: list[tuple[str, str]] = []
        for i in range(4):
            done = await run("projects", "create", "--name", f"c{i}")
            assert done.returncode == 0, done.stderr
            made.append((field(done.stdout, "project_id"), field(done.stdout, "api_key")))
        touched = [k for p, key in made for k in (keys.project(p), keys.api_key(hash_api_key(key)))]
        nodes = {client.get_node_from_key(k).name for k in touched}
        assert len(nodes) >= 2  # the records really are spread over the masters
        # projects list reads the projects of every master
        done = await run("projects", "list")
        assert done.returncode == 0, done.stderr
        assert {line.split()[0] for line in done.stdout.splitlines()[1:]} == {p for p, _ in made}
        for project, key in made:
            assert await project_for_api_key(client, keys, key) == project
        project, project_key = made[0]

        # agents create
        done = await run("agents", "create", "--project", project, "--agent-id", "bot-1")
        assert done.returncode == 0, done.stderr
        secret = field(done.stdout, "agent_secret")
        assert await agent_secret(client, keys, project, "bot-1") == secret

        # keys create / list / rotate / revoke
        done = await run("keys", "create", "--project", project, "--role", "ingest",
                         "--agent-id", "bot-1")
        assert done.returncode == 0, done.stderr
        ingest_id, ingest_key = field(done.stdout, "key_id"), field(done.stdout, "api_key")
        assert await grant_for_api_key(client, keys, ingest_key) == Grant(project, "ingest",
                                                                           "bot-1")
        listed = await run("keys", "list", "--project", project)
        assert listed.returncode == 0, listed.stderr
        rows = [line.split() for line in listed.stdout.splitlines()[1:]]  # under the header
        assert [r[:3] for r in rows] == [[hash_api_key(project_key)[:12], "admin", "-"],
                                         [ingest_id, "ingest", "bot-1"]]
        done = await run("keys", "rotate", "--project", project, "--key-id", ingest_id)
        assert done.returncode == 0, done.stderr
        rotated_id, rotated_key = field(done.stdout, "key_id"), field(done.stdout, "api_key")
        assert await grant_for_api_key(client, keys, ingest_key) is None
        assert not await client.exists(keys.api_key(hash_api_key(ingest_key)))
        assert await grant_for_api_key(client, keys, rotated_key) == Grant(project, "ingest",
                                                                            "bot-1")
        again = await run("keys", "rotate", "--project", project, "--key-id", ingest_id)
        assert again.returncode == 2 and ingest_id in again.stderr
        done = await run("keys", "revoke", "--project", project, "--key-id", rotated_id)
        assert done.returncode == 0, done.stderr
        assert await grant_for_api_key(client, keys, rotated_key) is None
        assert not await client.exists(keys.api_key(hash_api_key(rotated_key)))

        # the project's own key, the agent's secret, the tier
        done = await run("projects", "rotate-key", "--project", project)
        assert done.returncode == 0, done.stderr
        new_project_key = field(done.stdout, "api_key")
        assert await project_for_api_key(client, keys, project_key) is None
        assert not await client.exists(keys.api_key(hash_api_key(project_key)))
        assert await project_for_api_key(client, keys, new_project_key) == project
        done = await run("agents", "rotate-secret", "--project", project, "--agent-id", "bot-1")
        assert done.returncode == 0, done.stderr
        new_secret = field(done.stdout, "agent_secret")
        assert new_secret != secret
        assert await agent_secret(client, keys, project, "bot-1") == new_secret
        done = await run("projects", "set-tier", "--project", project, "--tier", "high_volume")
        assert done.returncode == 0, done.stderr
        assert await client.hget(keys.project(project), "tier") == b"high_volume"
        bad = await run("projects", "set-tier", "--project", project, "--tier", "gold")
        assert bad.returncode == 2 and "unknown tier" in bad.stderr

        # the audit log of every step above
        actions = ["project.created", "agent.created", "key.created", "key.rotated",
                   "key.revoked", "key.rotated", "secret.rotated"]
        done = await run("audit", "verify", "--project", project)
        assert done.returncode == 0, done.stdout
        assert f"{len(actions)} entries verified" in done.stdout
        done = await run("audit", "export", "--project", project, "--from", "2000-01-01",
                         "--to", "2100-01-01")
        assert done.returncode == 0, done.stderr
        exported = list(csv.DictReader(io.StringIO(done.stdout)))
        assert [row["action"] for row in exported] == actions
    finally:
        await client.aclose()


async def test_cluster_without_the_setting_names_it(
    redis_cluster: RedisClusterServer, key_prefix: str
) -> None:
    """A plain client against a cluster node: every command is refused before it reads or
    writes anything (``INFO cluster`` says ``cluster_enabled:1``), exit 2, with the URL and the
    setting to change. Before, ``projects list`` printed "no projects yet" (it read one node's
    keys) and ``projects create`` could leave an id hash behind before a MOVED stopped it."""
    run = _runner({"RATCHET_REDIS_URL": redis_cluster.url, "RATCHET_KEY_PREFIX": key_prefix})
    expected = (f"ratchet: error: Redis at RATCHET_REDIS_URL={redis_cluster.url} is a Redis "
                "Cluster node (cluster_enabled:1): set RATCHET_REDIS_CLUSTER=true")
    outcomes = [await run("projects", "create", "--name", f"x{i}") for i in range(4)]
    outcomes.append(await run("projects", "list"))
    outcomes.append(await run("baselines", "list", "--project", "prj_x"))
    for done in outcomes:
        assert done.returncode == 2, (done.args, done.stdout, done.stderr)
        assert done.stderr.startswith(expected), done.stderr
        assert "no projects yet" not in done.stdout
    client = connect(redis_cluster.url, cluster=True)
    try:
        assert [k async for k in client.scan_iter(match=f"{key_prefix}:*")] == []
    finally:
        await client.aclose()


async def test_gateway_without_the_setting_names_it(
    redis_cluster: RedisClusterServer, gw_settings: Settings
) -> None:
    """A gateway with a plain client on a cluster node: 500 naming the setting, never a raw
    redis-py error (the redirect is translated in ratchet/store/redis.py)."""
    settings = gw_settings.replace(redis_url=redis_cluster.url, redis_cluster=False)
    async with own_gateway(settings) as gw, aiohttp.ClientSession() as http:
        statuses = []
        for i in range(6):  # keys hash to every master's slots; some answer MOVED
            headers = {"Authorization": f"Bearer rk_{i}{uuid.uuid4().hex}"}
            async with http.get(gw.url + "/v1/whoami", headers=headers) as resp:
                body = await resp.json()
                statuses.append(resp.status)
                assert resp.status in (401, 500), body
                if resp.status == 500:
                    assert "set RATCHET_REDIS_CLUSTER=true" in body["message"], body
        assert 500 in statuses
