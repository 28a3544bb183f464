"""``ratchet baselines list|show|export`` against a real Redis the engine has written."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from redis.asyncio import Redis

from models.events import IngestEvent, parse_event
from models.params import EngineParams
from ratchet.engine.engine import Engine
from ratchet.platform.provisioning import create_agent, create_project
from ratchet.store.baselines import BaselineReader
from ratchet.store.keys import Keys
from tests.integration.cli_support import ratchet_cli

#: Modes progress after a handful of runs (a short stream reaches soft-lock or locked); no
#: decay, so counts are exact.
FAST = EngineParams(checkpoint_runs=2, min_runs_soft=2, min_runs_locked=4, stability=1.0,
                    stability_large=1.0, decay_rate=0.0, decay_low=0.0, decay_mid=0.0,
                    decay_high=0.0)


def _run(project: str, agent: str, run: str, shapes: list[dict[str, object]],
         priority: str = "normal") -> list[IngestEvent]:
    return [
        parse_event({"event_id": str(uuid.uuid4()), "agent_id": agent, "run_id": run,
                     "service": "crm", "action": "op", "priority": priority,
                     "payload": payload, "end_of_run": i == len(shapes) - 1}, project)
        for i, payload in enumerate(shapes)
    ]


async def _learn(redis: Redis, keys: Keys) -> tuple[str, Engine]:
    project, _ = await create_project(redis, keys, "baselines")
    for agent in ("alpha", "beta"):
        await create_agent(redis, keys, project, agent)
    engine = Engine.create(redis, keys=keys, params=FAST, guardrails=False)
    a, b, c = {"id": 1}, {"ids": [1], "limit": 2}, {"to": "x", "body": "y"}
    for r in range(9):  # alpha: a → b → end twice as often as a → c → end
        await engine.decide(_run(project, "alpha", f"r{r}", [a, b] if r % 3 else [a, c]))
    await engine.decide(_run(project, "beta", "r0", [a], priority="critical"))
    return project, engine


async def test_reader_lists_chains_and_reads_probabilities(redis_client: Redis, keys: Keys) -> None:
    project, _ = await _learn(redis_client, keys)
    reader = BaselineReader(redis_client, keys)
    chains = await reader.chains(project)
    assert [c.label for c in chains] == [f"{project}/alpha/crm", f"{project}/beta/crm!critical"]
    assert [c.label for c in await reader.chains(project, "beta")] == [chains[1].label]
    alpha = await reader.read(chains[0])
    assert alpha is not None and alpha.runs == 9 and alpha.mode in ("soft_lock", "locked")
    start = [t for t in alpha.transitions if t.source == "^"]
    assert len(start) == 1 and start[0].p == 1.0 and start[0].count == 9
    out_of_a = sorted(round(t.p, 3) for t in alpha.transitions if t.source == start[0].target)
    assert out_of_a == [0.333, 0.667]  # 3 of 9 runs went to c, 6 to b
    assert sum(t.p for t in alpha.transitions if t.source == start[0].target) == 1.0
    assert alpha.transitions[0].count >= alpha.transitions[-1].count  # most frequent first
    missing = await reader.read(chains[0].__class__(project, "nobody", "crm"))
    assert missing is None


async def test_list_show_export_commands(redis_url: str, key_prefix: str, redis_client: Redis,
                                         tmp_path: Path) -> None:
    keys = Keys(key_prefix)
    project, _ = await _learn(redis_client, keys)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    chain = ["--project", project, "--agent", "alpha", "--service", "crm"]

    listed = ratchet_cli(["baselines", "list", "--project", project], env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["chain", "mode", "runs"]
    row = next(line for line in lines if line.startswith(f"{project}/alpha/crm "))
    assert row.split()[2] == "9"
    assert any(line.startswith(f"{project}/beta/crm!critical ") for line in lines)
    as_json = json.loads(ratchet_cli(["baselines", "list", "--project", project, "--json"],
                                     env).stdout)
    assert {c["chain"] for c in as_json} == {f"{project}/alpha/crm",
                                             f"{project}/beta/crm!critical"}

    shown = ratchet_cli(["baselines", "show", *chain, "--top", "2"], env)
    assert shown.returncode == 0, shown.stderr
    assert f"chain {project}/alpha/crm" in shown.stdout and "9 runs" in shown.stdout
    transitions = re.findall(r"-> \S+\s+p=([\d.]+)\s+count=([\d.]+)", shown.stdout)
    assert len(transitions) == 2 and transitions[0] == ("1.000", "9")

    exported = ratchet_cli(["baselines", "export", *chain], env)
    doc = json.loads(exported.stdout)
    assert doc["chain"] == f"{project}/alpha/crm" and doc["runs"] == 9
    assert len(doc["transitions"]) == doc["transitions_total"] == 5  # ^→a, a→b, a→c, b→$, c→$
    by_edge = {(t["from"], t["to"]): t for t in doc["transitions"]}
    assert by_edge[next(k for k in by_edge if k[0] == "^")]["p"] == 1.0

    dot_path = tmp_path / "alpha.dot"
    done = ratchet_cli(["baselines", "export", *chain, "--format", "dot", "-o", str(dot_path)],
                       env)
    assert done.returncode == 0, done.stderr
    dot = dot_path.read_text()
    assert dot.startswith(f'digraph "{project}/alpha/crm" {{') and dot.rstrip().endswith("}")
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="([\d.]+)"', dot, re.MULTILINE)
    assert {(f, t) for f, t, _ in edges} == set(by_edge)
    assert '"^" [label="START"' in dot and '"$" [label="END"' in dot

    unknown = ratchet_cli(["baselines", "show", "--project", project, "--agent", "nobody",
                           "--service", "crm"], env)
    assert unknown.returncode == 2 and "has no learned baseline" in unknown.stderr
