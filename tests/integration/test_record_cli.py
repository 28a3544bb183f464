"""``ratchet record``: the events agents sent, read back from the ingest topic (real gateway,
real Tansu) as the JSONL ``ratchet replay`` reads — and replayed."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from tests.integration.cli_support import ratchet_cli
from tests.integration.gateway_support import Gateway, Tenant, event, make_tenant

pytestmark = pytest.mark.kafka


def _env(gateway: Gateway) -> dict[str, str]:
    return {"RATCHET_KAFKA_BOOTSTRAP": gateway.settings.kafka_bootstrap or "",
            "RATCHET_TOPIC_INGEST": gateway.settings.topic_ingest}


async def test_record_then_replay(gateway: Gateway, tenant: Tenant, tmp_path: Path) -> None:
    other = await make_tenant(gateway, agent_id="agent-9")
    try:
        sent = [event(run_id=f"r{i // 3}", payload={"n": i}, end_of_run=i % 3 == 2)
                for i in range(9)]
        assert (await tenant.client.send_batch(sent[:6])).status == 200
        for ev in sent[6:]:
            assert (await tenant.client.send(ev)).status == 202
        theirs = event("agent-9", payload={"secret": "x"}, ts=1_700_000_000.5)
        assert (await other.client.send(theirs)).status == 202
    finally:
        await other.client.close()
    env = _env(gateway)

    out = tmp_path / "rec.jsonl"
    done = await asyncio.to_thread(ratchet_cli, ["record", "--output", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert "recorded 10 event(s)" in done.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # every project's payloads: the owner's only
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    by_id = {x["event_id"]: x for x in lines}
    assert set(by_id) == {e["event_id"] for e in [*sent, theirs]}
    mine = by_id[sent[4]["event_id"]]
    assert (mine["payload"], mine["run_id"], mine["project_id"]) == (
        {"n": 4}, "r1", tenant.project_id)
    assert abs(float(mine["ts"]) - time.time()) < 120  # when the gateway received it
    assert by_id[theirs["event_id"]]["ts"] == 1_700_000_000.5  # the agent's own ts kept
    # per agent in the order accepted
    assert [x["event_id"] for x in lines if x["agent_id"] == "agent-1"] == [
        e["event_id"] for e in sent]

    # one project, at most N, and nothing older than --since
    one = await asyncio.to_thread(ratchet_cli, [
        "record", "--output", "-", "--project", tenant.project_id, "--max-events", "4"], env)
    assert one.returncode == 0, one.stderr
    assert [json.loads(x)["event_id"] for x in one.stdout.splitlines()] == [
        e["event_id"] for e in sent[:4]]
    future = await asyncio.to_thread(ratchet_cli, [
        "record", "--output", "-", "--since", "2099-01-01T00:00:00Z"], env)
    assert future.returncode == 0 and future.stdout == ""

    # and replay reads what record wrote
    verdicts = tmp_path / "v.jsonl"
    replayed = await asyncio.to_thread(ratchet_cli, [
        "replay", "--input", str(out), "--output", str(verdicts)], {})
    assert replayed.returncode == 0, replayed.stderr
    assert len(verdicts.read_text().splitlines()) == 10


async def test_record_says_what_to_fix(gateway: Gateway, tmp_path: Path) -> None:
    no_broker = await asyncio.to_thread(
        ratchet_cli, ["record", "--output", str(tmp_path / "x")], {})
    assert no_broker.returncode == 2 and "RATCHET_KAFKA_BOOTSTRAP is not set" in no_broker.stderr
    missing = await asyncio.to_thread(
        ratchet_cli, ["record", "--output", "-"],
        {**_env(gateway), "RATCHET_TOPIC_INGEST": "no-such-topic-here"})
    assert missing.returncode == 2 and "no-such-topic-here" in missing.stderr
    bad_since = await asyncio.to_thread(
        ratchet_cli, ["record", "--output", "-", "--since", "yesterday"], _env(gateway))
    assert bad_since.returncode == 2 and "30m, 2h, 7d" in bad_since.stderr


async def test_a_failed_recording_leaves_the_output_as_it_was(
        gateway: Gateway, tenant: Tenant, tmp_path: Path) -> None:
    """Attack run 9, R9: an unreachable broker truncated an earlier recording to 0 bytes, and
    --output followed a symbolic link."""
    assert (await tenant.client.send(event())).status == 202
    earlier = tmp_path / "keep.jsonl"
    earlier.write_text('{"event_id": "earlier"}\n')
    down = {"RATCHET_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    failed = await asyncio.to_thread(ratchet_cli, [
        "record", "--output", str(earlier), "--max-events", "1"], down)
    assert failed.returncode == 2 and "cannot read topic" in failed.stderr
    assert "unchanged" in failed.stderr and "Traceback" not in failed.stderr
    assert earlier.read_text() == '{"event_id": "earlier"}\n'
    new = tmp_path / "new.jsonl"
    failed = await asyncio.to_thread(ratchet_cli, ["record", "--output", str(new)], down)
    assert failed.returncode == 2 and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.jsonl"]  # no temporary left

    target = tmp_path / "target.txt"
    target.write_text("mine\n")
    target.chmod(0o644)
    link = tmp_path / "rec_link.jsonl"
    link.symlink_to(target)
    refused = await asyncio.to_thread(ratchet_cli, ["record", "--output", str(link)],
                                      _env(gateway))
    assert refused.returncode == 2 and "is a symbolic link" in refused.stderr
    assert target.read_text() == "mine\n" and link.is_symlink()

    earlier.chmod(0o644)
    done = await asyncio.to_thread(ratchet_cli, ["record", "--output", str(earlier)],
                                   _env(gateway))
    assert done.returncode == 0, done.stderr
    assert "earlier" not in earlier.read_text() and earlier.read_text().count("\n") >= 1
    assert earlier.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "keep.jsonl", "rec_link.jsonl", "target.txt"]


async def test_since_out_of_range_is_refused_or_starts_at_the_end(
        gateway: Gateway, tenant: Tenant) -> None:
    assert (await tenant.client.send(event())).status == 202
    for since in ("99999999999d", "9" * 400 + "d", "0001-01-01T00:00:00Z"):
        refused = await asyncio.to_thread(
            ratchet_cli, ["record", "--output", "-", "--since", since], _env(gateway))
        assert refused.returncode == 2 and "before 1970" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    for since in ("0m", "9999-12-31T00:00:00Z"):
        nothing = await asyncio.to_thread(
            ratchet_cli, ["record", "--output", "-", "--since", since], _env(gateway))
        assert nothing.returncode == 0 and nothing.stdout == "", nothing.stderr
        # nothing read
        assert "recorded 0 event(s) from 0 envelope(s)" in nothing.stderr, (since, nothing.stderr)
