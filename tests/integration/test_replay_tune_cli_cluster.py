"""``ratchet replay`` and ``ratchet tune`` against a 3-master Redis Cluster, as commands.

With ``RATCHET_REDIS_CLUSTER`` set they run on the cluster client (verdicts for every event, the
replay's namespace spread over the masters and removed afterwards); without it, a cluster node
is refused before anything is written, with an error naming the URL and the setting. A
``MOVED`` answer is explained with the URL the command used, and never tells a user who set
``RATCHET_REDIS_CLUSTER`` to set it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import MovedError

from models.errors import ConfigError
from ratchet.cli import connect as cli_connect
from ratchet.cli.main import _message
from ratchet.config.settings import Settings
from ratchet.sandbox.servers import RedisClusterServer, RedisServer
from ratchet.sandbox.traffic import generate
from ratchet.store.redis import connect
from tests.integration.cli_support import ratchet_cli

pytestmark = pytest.mark.cluster

ACTIONS = {"allow", "flag", "pause", "reject"}


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay-cluster") / "events.jsonl"
    events = generate(agents=6, runs_per_agent=25, warmup_runs=10, anomaly_rate=0.2, seed=5)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


@pytest.fixture
def restore_target() -> Iterator[None]:
    """The module state of :mod:`ratchet.cli.connect` as it was (tests below set it)."""
    saved = cli_connect._target
    yield
    cli_connect._target = saved


async def _keys(cluster: RedisClusterServer, pattern: str) -> dict[str, list[bytes]]:
    """Keys matching ``pattern``, by master."""
    client = connect(cluster.url, cluster=True)
    assert isinstance(client, RedisCluster)
    try:
        found: dict[str, list[bytes]] = {}
        async for key in client.scan_iter(match=pattern, count=1000):
            node = client.get_node_from_key(key)
            assert node is not None
            found.setdefault(node.name, []).append(key)
        return found
    finally:
        await client.aclose()


async def test_replay_command_runs_on_the_cluster(
    redis_cluster: RedisClusterServer, events_file: Path, tmp_path: Path, key_prefix: str
) -> None:
    out, summary = tmp_path / "verdicts.jsonl", tmp_path / "summary.json"
    namespace = f"{key_prefix}-replay"
    done = ratchet_cli(
        ["replay", "--input", str(events_file), "--output", str(out), "--redis-url",
         redis_cluster.url, "--namespace", namespace, "--keep", "--json", str(summary),
         "--quiet"],
        {"RATCHET_REDIS_CLUSTER": "1", "RATCHET_KEY_PREFIX": key_prefix},
    )
    assert done.returncode == 0, done.stderr
    events = events_file.read_text().splitlines()
    verdicts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(verdicts) == len(events)
    assert [v["event_id"] for v in verdicts] == [json.loads(e)["event_id"] for e in events]
    assert {v["action"] for v in verdicts} <= ACTIONS
    assert any(v["action"] != "allow" for v in verdicts)  # the injected anomalies are seen
    doc = json.loads(summary.read_text())
    assert doc["events"] == len(events) and doc["invalid_lines"] == 0
    kept = await _keys(redis_cluster, f"{namespace}:*")
    assert len(kept) >= 2, kept  # the baselines really live on several masters

    # the same replay in a private namespace leaves nothing behind on any master
    done = ratchet_cli(
        ["replay", "--input", str(events_file), "--output", str(out), "--quiet"],
        {"RATCHET_REDIS_URL": redis_cluster.url, "RATCHET_REDIS_CLUSTER": "true",
         "RATCHET_KEY_PREFIX": key_prefix},
    )
    assert done.returncode == 0, done.stderr
    assert len(out.read_text().splitlines()) == len(events)
    assert await _keys(redis_cluster, "replay:*") == {}


async def test_tune_command_runs_on_the_cluster(
    redis_cluster: RedisClusterServer, events_file: Path, tmp_path: Path, key_prefix: str
) -> None:
    rows = tmp_path / "rows.json"
    done = ratchet_cli(
        ["tune", "--input", str(events_file), "--warmup", "10", "--no-guardrails",
         "--sigma", "3", "--floor", "8,12", "--fallback", "12", "--window", "10",
         "--quiet", "--json", str(rows)],
        {"RATCHET_REDIS_URL": redis_cluster.url, "RATCHET_REDIS_CLUSTER": "true",
         "RATCHET_KEY_PREFIX": key_prefix},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["sigma", "floor", "fallback", "window"]
    doc = json.loads(rows.read_text())
    assert len(doc["rows"]) == 2 and doc["measured"] is not None
    assert await _keys(redis_cluster, "replay:*") == {}


async def test_replay_on_a_cluster_node_without_the_setting_is_refused(
    redis_cluster: RedisClusterServer, events_file: Path, tmp_path: Path, key_prefix: str
) -> None:
    namespace = f"{key_prefix}-refused"
    done = ratchet_cli(
        ["replay", "--input", str(events_file), "--output", str(tmp_path / "v.jsonl"),
         "--redis-url", redis_cluster.url, "--namespace", namespace, "--keep", "--quiet"],
        {"RATCHET_KEY_PREFIX": key_prefix},
    )
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr
    assert f"--redis-url={redis_cluster.url} is a Redis Cluster node" in done.stderr
    assert "set RATCHET_REDIS_CLUSTER=true" in done.stderr
    assert await _keys(redis_cluster, f"{namespace}:*") == {}  # refused before any write


async def test_moved_names_the_url_and_the_setting_only_when_it_is_off(
    restore_target: None,
) -> None:
    moved = MovedError("3999 127.0.0.1:6381")
    translated = ConfigError("Redis answered MOVED")
    with RedisServer() as single:
        client = await cli_connect.open_redis(Settings(redis_url=single.url))
        await client.aclose()
        said = _message(translated, moved)
        assert said == (f"Redis at RATCHET_REDIS_URL={single.url} answered MOVED: it is a "
                        "Redis Cluster node; set RATCHET_REDIS_CLUSTER=true")
    cluster = Settings(redis_url="redis://127.0.0.1:7000/0", redis_cluster=True)
    client = await cli_connect.open_redis(cluster, "redis://127.0.0.1:7001/0")  # no I/O yet
    await client.aclose()
    said = _message(translated, moved)
    assert said.startswith("Redis at --redis-url=redis://127.0.0.1:7001/0 answered MOVED")
    assert "set RATCHET_REDIS_CLUSTER" not in said
