"""Key changes as single-slot steps (docs/security.md, "Key changes on a Redis Cluster"): a change
interrupted after any step leaves no half-valid key, because a key is live only while its
project's side names it. Each step is replayed by hand here, and the state after it is read the
way the gateway reads it. Runs on a single Redis and on the 3-master cluster (conftest)."""

from __future__ import annotations

import asyncio
from typing import Any

from models.scopes import Grant
from ratchet.platform.api_keys import create_key, grant_for_api_key, list_keys, rotate_key
from ratchet.platform.credentials import new_api_key, rotate_api_key_of_project
from ratchet.platform.provisioning import create_project, hash_api_key, project_for_api_key
from ratchet.sandbox.client import RatchetClient
from ratchet.store.keys import Keys
from ratchet.store.scripts import scripts_for
from tests.integration.gateway_support import Gateway, Tenant, event


async def test_project_key_rotation_step_by_step(redis_client: Any, keys: Keys) -> None:
    project, old = await create_project(redis_client, keys, "steps")
    new = new_api_key()
    old_sha, new_sha = hash_api_key(old), hash_api_key(new)
    # 1. the new record only: the old key still works, the new one does not
    assert await redis_client.set(keys.api_key(new_sha), project, nx=True)
    assert await project_for_api_key(redis_client, keys, old) == project
    assert await project_for_api_key(redis_client, keys, new) is None
    assert not await redis_client.exists(keys.api_key(new_sha))  # refused and cleared
    # 1 again, then 2. the switch: the new key works, the old one is refused at once
    assert await redis_client.set(keys.api_key(new_sha), project, nx=True)
    code = await scripts_for(redis_client)["rotate_key"](
        keys=[keys.project(project)], args=[old_sha, new_sha, "1"])
    assert int(code) == 0
    assert await redis_client.exists(keys.api_key(old_sha))  # 3. has not run
    assert await project_for_api_key(redis_client, keys, old) is None
    assert not await redis_client.exists(keys.api_key(old_sha))  # the leftover is gone
    assert await project_for_api_key(redis_client, keys, new) == project
    # the switch again with the old key: refused, nothing changes
    code = await scripts_for(redis_client)["rotate_key"](
        keys=[keys.project(project)], args=[old_sha, hash_api_key(new_api_key()), "2"])
    assert int(code) == -14
    assert await project_for_api_key(redis_client, keys, new) == project


async def test_scoped_key_revocation_unlists_first(redis_client: Any, keys: Keys) -> None:
    project, _ = await create_project(redis_client, keys, "steps")
    info, key = await create_key(redis_client, keys, project, "ingest")
    assert await grant_for_api_key(redis_client, keys, key) == Grant(project, "ingest")
    # revocation interrupted after its first step (unlisted, record still there)
    await redis_client.hdel(keys.project_keys(project), info.key_id)
    assert await redis_client.exists(keys.api_key(hash_api_key(key)))
    assert await grant_for_api_key(redis_client, keys, key) is None
    assert not await redis_client.exists(keys.api_key(hash_api_key(key)))


async def test_concurrent_rotations_leave_one_key_and_no_leftovers(
    redis_client: Any, keys: Keys
) -> None:
    project, old = await create_project(redis_client, keys, "race")
    info, scoped = await create_key(redis_client, keys, project, "admin")
    scripts = scripts_for(redis_client)
    primary = await asyncio.gather(
        *(rotate_api_key_of_project(redis_client, keys, scripts, project) for _ in range(8)),
        return_exceptions=True)
    scoped_new = await asyncio.gather(
        *(rotate_key(redis_client, keys, scripts, project, info.key_id) for _ in range(8)),
        return_exceptions=True)
    won = [k for k in primary if isinstance(k, str)]
    won_scoped = [r[1] for r in scoped_new if isinstance(r, tuple)]
    assert len(won_scoped) == 1 and len(won) >= 1
    live = [k for k in won if await project_for_api_key(redis_client, keys, k) == project]
    assert len(live) == 1  # later winners rotated away earlier winners' keys
    assert await project_for_api_key(redis_client, keys, old) is None
    assert await grant_for_api_key(redis_client, keys, scoped) is None
    assert await grant_for_api_key(redis_client, keys, won_scoped[0]) == Grant(project, "admin")
    # exactly two key records remain: the live project key's and the live scoped key's
    records = [k async for k in redis_client.scan_iter(match=f"{keys.prefix}:apikey:*")]
    assert sorted(records) == sorted(
        keys.api_key(hash_api_key(k)).encode() for k in (live[0], won_scoped[0]))
    assert [k.key_id for k in await list_keys(redis_client, keys, project)] == [
        hash_api_key(live[0])[:12], hash_api_key(won_scoped[0])[:12]]


async def test_a_remembered_key_left_by_an_interrupted_rotation_is_refused(
    gateway: Gateway, tenant: Tenant
) -> None:
    """The gateway's fast ingest path (a remembered key) checks the project's side too: after
    the switch, the old key's record (step 3 never ran) admits nothing."""
    redis, keys = gateway.redis, gateway.keys
    for _ in range(2):  # the second request takes the fast path with the remembered grant
        assert (await tenant.client.send(event(tenant.agent_id))).status == 202
    old_sha, new = hash_api_key(tenant.api_key), new_api_key()
    assert await redis.set(keys.api_key(hash_api_key(new)), tenant.project_id, nx=True)
    code = await scripts_for(redis)["rotate_key"](
        keys=[keys.project(tenant.project_id)], args=[old_sha, hash_api_key(new), "1"])
    assert int(code) == 0 and await redis.exists(keys.api_key(old_sha))
    refused = await tenant.client.send(event(tenant.agent_id))
    assert refused.status == 401, refused.body
    renewed = RatchetClient(gateway.url, new, tenant.agent_id, tenant.secret,
                            project_id=tenant.project_id)
    try:
        assert (await renewed.send(event(tenant.agent_id))).status == 202
    finally:
        await renewed.close()
