"""Per-project engine overrides: ``PUT /v1/policy/engine`` through a real gateway changes what a
running worker decides (no restart), is audited, and a bad key is a 400 naming it."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from models.nodes import ChainId
from models.params import EngineParams
from ratchet.config.settings import Settings
from ratchet.sandbox.servers import RedisClusterServer
from ratchet.store.audit import AuditLog
from ratchet.store.engine_overrides import ProjectParams, load_override
from tests.integration.pipeline_support import (
    Stack,
    step_event,
    three_step_run,
    verdict_now,
    worker_ready,
)

pytestmark = pytest.mark.kafka


def _novel(run: str) -> dict[str, object]:
    """A call shape never seen before (a fresh key each time, so nothing learns it away)."""
    event = step_event(run, 0, "novel")
    event["payload"] = {"export": {"table": "customers", f"k{uuid.uuid4().hex[:8]}": True}}
    return {**event, "end_of_run": True}


async def _decide(stack: Stack, event: dict[str, object]) -> dict[str, object]:
    return dict((await verdict_now(stack, event))["verdict"])


async def _locked_chain(stack: Stack) -> None:
    """Train the helpdesk chain until it is locked (LOCKING_ENGINE: 4 runs)."""
    for i in range(8):
        for event in three_step_run(f"train-{i}-{uuid.uuid4().hex[:6]}"):
            await verdict_now(stack, event)


async def test_override_applies_to_a_running_worker_and_is_audited(stack: Stack) -> None:
    await worker_ready(stack)
    await _locked_chain(stack)
    pid = stack.worker.proc.pid if stack.worker.proc else None
    before = await _decide(stack, _novel(f"n-{uuid.uuid4().hex[:6]}"))
    assert before["mode"] == "locked" and before["action"] == "pause", before
    assert before["threshold"] == pytest.approx(12.0)  # the global floor_bits

    answer = await stack.client.put_engine_override({"floor_bits": 25.0})
    assert answer.status == 200, answer.body
    assert answer.body["engine"] == {"floor_bits": 25.0} and answer.body["version"] == 1
    assert "floor_bits = 25.0" in answer.body["toml"]

    # a never-seen shape (19.93 bits) is no longer anomalous once the worker has re-read the project's override (RATCHET_POLICY_REFRESH_S, 1 s by default)
    deadline = time.monotonic() + 20
    while True:
        after = await _decide(stack, _novel(f"n-{uuid.uuid4().hex[:6]}"))
        if after["action"] == "allow":
            break
        assert time.monotonic() < deadline, (after, stack.logs())
        await asyncio.sleep(0.3)  # the free tier admits 120 events a minute
    assert after["threshold"] == pytest.approx(25.0) and not after["anomalous"]
    assert stack.worker.proc is not None and stack.worker.proc.poll() is None
    assert stack.worker.proc.pid == pid  # the same process: no restart

    redis = Redis.from_url(stack.redis_url)
    try:
        project = stack.client.project_id
        audit = AuditLog(redis, stack.keys, Settings(key_prefix=stack.keys.prefix))
        entries = [e for e in (await audit.page(project)).entries
                   if e.action.startswith("engine.")]
        assert [e.action for e in entries] == ["engine.override_replaced"]
        assert entries[0].details["engine"] == {"floor_bits": 25.0}
        assert entries[0].actor.startswith("apikey:")

        # a misspelt key: 400 naming it, nothing stored, nothing audited
        bad = await stack.client.put_engine_override({"floor_bit": 3})
        assert bad.status == 400, bad.body
        assert bad.body["field"] == "engine.floor_bit"
        assert "did you mean 'floor_bits'" in bad.body["message"]
        wrong_type = await stack.client.put_engine_override({"window": "ten"})
        assert wrong_type.status == 400 and wrong_type.body["field"] == "engine.window"
        # caps and windows bound Redis's work per event for every tenant: held to the defaults
        unbounded = await stack.client.put_engine_override(
            {"node_cap": 1_000_000_000, "edge_cap": 1_000_000_000})
        assert unbounded.status == 400 and unbounded.body["field"] == "engine.edge_cap"
        assert "between 2 and 4096" in unbounded.body["message"], unbounded.body
        assert (await load_override(redis, stack.keys, project)).values == {"floor_bits": 25.0}
        entries = [e for e in (await audit.page(project)).entries
                   if e.action.startswith("engine.")]
        assert len(entries) == 1

        # delete: the global parameters apply again, audited
        gone = await stack.client.delete_engine_override()
        assert gone.status == 200 and gone.body["source"] == "global", gone.body
        # the allowed novel scores entered the rolling window; normal runs push them out
        for i in range(4):
            for event in three_step_run(f"flush-{i}-{uuid.uuid4().hex[:6]}"):
                await verdict_now(stack, event)
        deadline = time.monotonic() + 20
        while True:
            again = await _decide(stack, _novel(f"n-{uuid.uuid4().hex[:6]}"))
            if again["action"] == "pause":
                break
            assert time.monotonic() < deadline, (again, stack.logs())
            await asyncio.sleep(0.3)
        entries = [e for e in (await audit.page(project)).entries
                   if e.action.startswith("engine.")]
        assert [e.action for e in entries] == ["engine.override_replaced",
                                               "engine.override_deleted"]
    finally:
        await redis.aclose()


async def test_project_params_checks_the_version_once_per_refresh(redis_url: str,
                                                                  key_prefix: str) -> None:
    """The cache asks Redis for the version once per project and refresh, not per batch."""
    from models.params import EngineParams
    from ratchet.store.engine_overrides import save_override
    from ratchet.store.keys import Keys

    redis = Redis.from_url(redis_url)
    keys = Keys(key_prefix)
    now = [0.0]
    base = EngineParams()
    try:
        params = ProjectParams(redis, keys, base, refresh_s=1.0, clock=lambda: now[0])
        assert (await params.params({"p"}))["p"] is base
        await save_override(redis, keys, "p", {"floor_bits": 9.0}, actor="cli", now=1.0)
        assert (await params.params({"p"}))["p"] is base  # cached: not re-checked yet
        now[0] = 1.5
        got = (await params.params({"p", "q"}))
        assert got["p"].floor_bits == 9.0 and got["q"] is base
        assert got["p"].sigma_multiplier == base.sigma_multiplier
    finally:
        await redis.aclose()


async def test_overrides_cli_validates_stores_shows_and_deletes(redis_url: str, key_prefix: str,
                                                                tmp_path: Path) -> None:
    from ratchet.platform.provisioning import create_project
    from ratchet.store.keys import Keys
    from tests.integration.cli_support import ratchet_cli

    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    setup = Redis.from_url(redis_url)
    try:
        p1, _ = await create_project(setup, Keys(key_prefix), "overrides")
    finally:
        await setup.aclose()
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nsigma_multipler = 2.5\n")
    done = ratchet_cli(["overrides", "set", "--project", p1, str(bad)], env)
    assert done.returncode == 2
    assert "engine.sigma_multipler is not a known engine parameter (did you mean " \
           "'sigma_multiplier'?)" in done.stderr
    good = tmp_path / "good.toml"
    good.write_text("[engine]\nsigma_multiplier = 2.5\nwindow = 12\nwindow_large = 18\n")
    done = ratchet_cli(["overrides", "set", "--project", p1, str(good), "--operator", "ana"],
                       env)
    assert done.returncode == 0, done.stderr
    # a mistyped project is refused before anything is written, reads included
    for args in (["overrides", "set", "--project", p1 + "x", str(good)],
                 ["overrides", "show", "--project", p1 + "x"],
                 ["keys", "list", "--project", p1 + "x"],
                 ["audit", "verify", "--project", p1 + "x"]):
        refused = ratchet_cli(args, env)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert f"project {p1}x does not exist" in refused.stderr, refused.stderr
        assert "ratchet projects list" in refused.stderr
    shown = ratchet_cli(["overrides", "show", "--project", p1], env)
    assert "sigma_multiplier = 2.5\nwindow = 12\nwindow_large = 18\n" in shown.stdout
    redis = Redis.from_url(redis_url)
    try:
        keys = Keys(key_prefix)
        stored = await load_override(redis, keys, p1)
        assert stored.values == {"sigma_multiplier": 2.5, "window": 12, "window_large": 18}
        assert stored.updated_by == "operator:ana"
        assert ratchet_cli(["overrides", "delete", "--project", p1], env).returncode == 0
        assert (await load_override(redis, keys, p1)).values == {}
        audit = AuditLog(redis, keys, Settings(key_prefix=key_prefix))
        assert [e.action for e in (await audit.page(p1)).entries] == [
            "engine.override_replaced", "engine.override_deleted"]
    finally:
        await redis.aclose()


@pytest.mark.parametrize("where", ["single", "cluster"])
async def test_an_override_reaches_every_chain_of_a_project(
        where: str, redis_url: str, redis_cluster: RedisClusterServer, key_prefix: str) -> None:
    """A write sets each existing chain's sigma and fallback in pipelined round trips (attack
    run 7, F8: 10,000 chains took 1.1-2.0 s of sequential round trips per write) — on a
    single Redis and across the slots of a cluster — and clears them again on delete."""
    from ratchet.store.engine_overrides import delete_override, save_override
    from ratchet.store.keys import Keys
    from ratchet.store.redis import connect

    redis = (connect(redis_cluster.url, cluster=True) if where == "cluster"
             else connect(redis_url))
    keys = Keys(key_prefix + where)
    agents = [f"a{i}" for i in range(40)]
    try:
        await redis.sadd(keys.agents("p"), *agents)
        metas = []
        for i, agent in enumerate(agents):
            for service in ("crm", "mail"):
                await redis.hset(keys.agent_services("p", agent), service, "0:1")
                meta = keys.chain_keys(ChainId("p", agent, service).tag).meta
                if i % 10:  # every tenth agent's chains expired: left alone
                    await redis.hset(meta, mapping={"runs": 5, "forced": 1 if i % 7 == 0 else 0})
                    metas.append((meta, i % 7 == 0))
        await save_override(redis, keys, "p", {"sigma_multiplier": 2.0, "fallback_bits": 9.0},
                            actor="cli", now=1.0)
        for meta, forced in metas:
            sig, fb = await redis.hmget(meta, ["sig", "fb"])
            assert float(fb) == 9.0
            assert float(sig) == (EngineParams().forced_sigma if forced else 2.0)
        await delete_override(redis, keys, "p", actor="cli", now=2.0)
        for meta, forced in metas:
            sig, fb = await redis.hmget(meta, ["sig", "fb"])
            assert fb is None and (sig is None) != forced
        assert await redis.exists(keys.chain_keys(ChainId("p", "a0", "crm").tag).meta) == 0
    finally:
        await redis.aclose()
