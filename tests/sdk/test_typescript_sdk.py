"""The TypeScript SDK (clients/typescript): ``npm ci``, build, and its ``node --test`` suite —
the shared signature vectors and the tests against this suite's real gateway and worker (a
project and agent of its own on the SDK stack)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ratchet.sandbox.stack import Credentials, provision

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]
SDK = Path(__file__).resolve().parents[2] / "clients" / "typescript"


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=SDK, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_typescript_sdk_suite(sdk_stack: Credentials) -> None:
    npm, node = shutil.which("npm"), shutil.which("node")
    assert npm and node, "Node.js >= 18 and npm are needed for the TypeScript SDK tests"
    agent = f"ts-{uuid.uuid4().hex[:6]}"
    project, api_key, secret = asyncio.run(
        provision(sdk_stack.redis_url, sdk_stack.key_prefix, agent))
    env = {**os.environ, "RATCHET_SDK_URL": sdk_stack.url, "RATCHET_SDK_API_KEY": api_key,
           "RATCHET_SDK_PROJECT_ID": project, "RATCHET_SDK_AGENT_ID": agent,
           "RATCHET_SDK_AGENT_SECRET": secret}
    for step in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
        done = _run(step, env, 300)
        assert done.returncode == 0, f"{' '.join(step)}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    tests = sorted(str(p.relative_to(SDK)) for p in (SDK / "test").glob("*.test.mjs"))
    result = _run(["node", "--test", *tests], env, 400)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    passed = int(re.search(r"^# pass (\d+)$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"^# fail (\d+)$", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    vectors = json.loads((SDK.parents[1] / "docs" / "signature-vectors.json").read_text())
    # every shared vector, and the five tests against the gateway, ran and passed
    at_least = sum(len(vectors[k]) for k in ("canonical", "events", "refused")) + 5
    assert failed == 0 and passed >= at_least, out[-3000:]
