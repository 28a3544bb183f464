"""``ratchet baselines export`` with labels and ``ratchet baselines diff`` on real exports."""

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
from ratchet.store.keys import Keys
from tests.integration.cli_support import ratchet_cli

FAST = EngineParams(checkpoint_runs=2, min_runs_soft=2, min_runs_locked=4, stability=1.0,
                    stability_large=1.0, decay_rate=0.0, decay_low=0.0, decay_mid=0.0,
                    decay_high=0.0)
SEARCH = {"query": "x", "limit": 5}
OPEN = {"doc_id": "d1"}
SHARE = {"doc_id": "d1", "with": ["bob"]}


def _run(project: str, agent: str, run: str, steps: list[tuple[str, dict[str, object]]]
         ) -> list[IngestEvent]:
    return [parse_event({"event_id": str(uuid.uuid4()), "agent_id": agent, "run_id": run,
                         "service": "docs", "action": action, "payload": payload,
                         "end_of_run": i == len(steps) - 1}, project)
            for i, (action, payload) in enumerate(steps)]


async def test_export_with_labels_and_diff_exit_codes(redis_url: str, key_prefix: str,
                                                      redis_client: Redis, tmp_path: Path) -> None:
    keys = Keys(key_prefix)
    project, _ = await create_project(redis_client, keys, "diff")
    await create_agent(redis_client, keys, project, "writer")
    engine = Engine.create(redis_client, keys=keys, params=FAST, guardrails=False)
    env = {"RATCHET_REDIS_URL": redis_url, "RATCHET_KEY_PREFIX": key_prefix}
    for r in range(2):  # two runs: still shadow
        await engine.decide(_run(project, "writer", f"a{r}",
                                 [("docs.search", SEARCH), ("docs.open", OPEN)]))
    a_path, b_path = tmp_path / "a.json", tmp_path / "b.json"
    done = ratchet_cli(["baselines", "export", "--project", project, "-o", str(a_path)], env)
    assert done.returncode == 0, done.stderr
    a_doc = json.loads(a_path.read_text())
    assert isinstance(a_doc, list) and len(a_doc) == 1 and a_doc[0]["mode"] == "shadow"
    labels = a_doc[0]["labels"]
    assert sorted(lab["action"] for lab in labels.values()) == ["docs.open", "docs.search"]
    assert {"limit:num", "query:str"} == set(next(
        lab["paths"] for lab in labels.values() if lab["action"] == "docs.search"))

    # more runs lock the chain; half of them share after opening
    for r in range(10):
        steps = [("docs.search", SEARCH), ("docs.open", OPEN)]
        if r % 2:
            steps.append(("docs.share", SHARE))
        await engine.decide(_run(project, "writer", f"b{r}", steps))
    await create_agent(redis_client, keys, project, "reader")
    await engine.decide(_run(project, "reader", "c0", [("docs.search", SEARCH)]))
    done = ratchet_cli(["baselines", "export", "--project", project, "-o", str(b_path)], env)
    assert done.returncode == 0, done.stderr

    same = ratchet_cli(["baselines", "diff", str(a_path), str(a_path)], env)
    assert same.returncode == 0 and same.stdout.startswith("no differences"), same
    changed = ratchet_cli(["baselines", "diff", str(a_path), str(b_path)], env)
    assert changed.returncode == 1, changed.stderr
    out = changed.stdout
    assert f"+ chain {project}/reader/docs" in out
    assert re.search(rf"~ chain {project}/writer/docs\n    mode: shadow -> locked", out), out
    assert re.search(r"\+ docs docs\.open \{doc_id:str\} -> docs docs\.share "
                     r"\{doc_id:str, with\[\]:str\}  p=0\.\d+", out), out
    as_json = json.loads(ratchet_cli(["baselines", "diff", str(a_path), str(b_path), "--json"],
                                     env).stdout)
    assert as_json["differs"] and as_json["chains_added"] == [f"{project}/reader/docs"]
    (chain,) = as_json["chains_changed"]
    assert chain["mode"] == {"before": "shadow", "after": "locked"}
    assert sorted((t["from_name"].split(" {")[0], t["to_name"])
                  for t in chain["transitions_added"]) == [
        ("docs docs.open", "docs docs.share {doc_id:str, with[]:str}"),
        ("docs docs.share", "END")]
    # open → END dropped from 1.0 as half of the runs now share: a probability shift
    shift = next(t for t in chain["probability_shifts"] if t["to"] == "$")
    assert shift["p_before"] == 1.0 and 0.3 < shift["p_after"] < 0.7

    # the DOT export names nodes by their labels
    dot = ratchet_cli(["baselines", "export", "--project", project, "--agent", "writer",
                       "--service", "docs", "--format", "dot"], env).stdout
    assert re.search(r'\[label="docs docs\.share\\ndoc_id:str\\nwith\[\]:str", tooltip=', dot)

    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "an export"}')
    broken = ratchet_cli(["baselines", "diff", str(a_path), str(bad)], env)
    assert broken.returncode == 2 and "is not a baseline export" in broken.stderr
    missing = ratchet_cli(["baselines", "diff", str(a_path), str(tmp_path / "none.json")], env)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    half = ratchet_cli(["baselines", "export", "--project", project, "--agent", "writer"], env)
    assert half.returncode == 2 and "--service" in half.stderr
