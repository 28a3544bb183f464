"""Actions that write the audit log outside the gateway: CLI provisioning, baseline resets,
and the ``ratchet audit verify|export`` commands against a real Redis."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from models.errors import ValidationError
from models.events import parse_event
from ratchet.config.settings import Settings
from ratchet.engine.engine import Engine
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys
from tests.integration.cli_support import field, ratchet_cli


async def test_baseline_reset_is_audited(redis_client: Redis, keys: Keys) -> None:
    engine = Engine.create(redis_client, keys=keys)
    audit = AuditLog(redis_client, keys, Settings())
    ev = parse_event({"event_id": str(uuid.uuid4()), "agent_id": "bot",
                                "run_id": "r", "service": "crm", "action": "read",
                                "payload": {"a": 1}}, "prj_r")
    await engine.decide([ev])
    chain = engine.chain_of(ev)
    deleted = await engine.reset(chain, audit=audit, actor="operator:alice")
    assert deleted > 0
    [entry] = (await audit.page("prj_r")).entries
    assert (entry.action, entry.actor, entry.target) == ("baseline.reset", "operator:alice",
                                                         f"chain:{chain.label}")
    assert entry.details["keys_deleted"] == deleted and entry.details["agent_id"] == "bot"


async def test_baselines_reset_command(redis_url: str, key_prefix: str, redis_client: Redis) -> None:
    keys = Keys(key_prefix)
    engine = Engine.create(redis_client, keys=keys)
    ev = parse_event({"event_id": str(uuid.uuid4()), "agent_id": "bot", "run_id": "r",
                      "service": "crm", "action": "read", "payload": {"a": 1}}, "prj_c")
    await engine.decide([ev])
    chain = engine.chain_of(ev)
    assert await redis_client.exists(keys.chain_keys(chain.tag).meta)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    await redis_client.hset(keys.project("prj_c"), "name", "c")  # as `projects create` writes
    done = ratchet_cli(["baselines", "reset", "--project", "prj_c", "--agent", "bot",
                        "--service", "crm", "--operator", "alice"], env)
    assert done.returncode == 0, done.stderr
    assert "prj_c/bot/crm: reset" in done.stdout
    assert not await redis_client.exists(keys.chain_keys(chain.tag).meta)
    [entry] = (await AuditLog(redis_client, keys, Settings()).page("prj_c")).entries
    assert (entry.action, entry.actor) == ("baseline.reset", "operator:alice")
    bad = ratchet_cli(["baselines", "reset", "--project", "prj_c", "--agent", "bot",
                       "--service", "crm", "--operator", "rk_secret key"], env)
    assert bad.returncode == 2 and "actor" in bad.stderr
    # a refused actor is refused BEFORE the reset: nothing done unaudited
    await engine.decide([parse_event({"event_id": str(uuid.uuid4()), "agent_id": "bot",
                                      "run_id": "r2", "service": "crm", "action": "read",
                                      "payload": {"a": 1}}, "prj_c")])
    with pytest.raises(ValidationError):
        await engine.reset(chain, audit=AuditLog(redis_client, keys, Settings()), actor="as_x")
    assert await redis_client.exists(keys.chain_keys(chain.tag).meta)


async def test_provisioning_is_audited_without_secrets(redis_client: Redis, keys: Keys) -> None:
    audit = AuditLog(redis_client, keys, Settings())
    project, api_key = await create_project(redis_client, keys, "acme", audit=audit)
    _agent, secret = await create_agent(redis_client, keys, project, "bot-1", audit=audit)
    entries = (await audit.page(project)).entries
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("project.created", f"project:{project}", "cli"), ("agent.created", "agent:bot-1", "cli")]
    dumped = orjson.dumps([e.to_dict() for e in entries]).decode()
    assert api_key not in dumped and secret not in dumped
    # a secret-looking actor is refused before anything is created
    with pytest.raises(ValidationError):
        await create_agent(redis_client, keys, project, "bot-2", audit=audit, actor=api_key)
    assert not await redis_client.exists(keys.agent(project, "bot-2"))
    before = await redis_client.scard(keys.projects())
    with pytest.raises(ValidationError):
        await create_project(redis_client, keys, "evil", audit=audit, actor=secret)
    assert await redis_client.scard(keys.projects()) == before


async def test_cli_audit_verify_and_export(
    redis_url: str, key_prefix: str, redis_client: Redis, tmp_path: Path
) -> None:
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    done = ratchet_cli(["projects", "create", "--name", "acme"], env)
    assert done.returncode == 0, done.stderr
    project = field(done.stdout, "project_id")
    for name in ("a1", "a2", "a3"):
        assert ratchet_cli(["agents", "create", "--project", project, "--agent-id", name],
                           env).returncode == 0

    ok = ratchet_cli(["audit", "verify", "--project", project], env)
    assert ok.returncode == 0 and "4 entries verified" in ok.stdout, ok.stdout + ok.stderr

    out = tmp_path / "audit.csv"
    exported = ratchet_cli(["audit", "export", "--project", project, "--from", "2000-01-01",
                            "--to", "2999-12-31", "--output", str(out)], env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["action"] for r in rows] == ["project.created"] + ["agent.created"] * 3
    assert [r["target"] for r in rows[1:]] == ["agent:a1", "agent:a2", "agent:a3"]
    empty = ratchet_cli(["audit", "export", "--project", project, "--from", "2000-01-01",
                         "--to", "2000-01-02"], env)
    assert empty.returncode == 0 and empty.stdout.strip().count("\n") == 0  # header only
    bad = ratchet_cli(["audit", "export", "--project", project, "--from", "yesterday",
                       "--to", "2000-01-02"], env)
    assert bad.returncode == 2 and "--from must be" in bad.stderr

    # tamper: edit the details of seq 3 directly in Redis → verify names seq 3, exit 1
    key = Keys(key_prefix).audit_entries(project)
    [raw] = await redis_client.zrange(key, 3, 3, byscore=True)
    entry = orjson.loads(raw)
    entry["target"] = "agent:someone-else"
    await redis_client.zremrangebyscore(key, 3, 3)
    await redis_client.zadd(key, {orjson.dumps(entry): 3})
    tampered = ratchet_cli(["audit", "verify", "--project", project], env)
    assert tampered.returncode == 1
    assert "seq 3: hash_mismatch" in tampered.stdout
