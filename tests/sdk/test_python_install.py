"""``pip install clients/python`` into a fresh venv whose application has its own ``models``
package: the SDK imports nothing of the server, and talks to a real gateway from there."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from ratchet.sandbox.stack import Credentials

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]

APP = """
import json, sys, uuid
import models                       # the application's own package of that name
from ratchet_client import Client, sign_event
assert models.OWNER == "the application", models.__file__
creds = json.loads(sys.argv[1])
vector = json.loads(sys.argv[2])
assert sign_event(vector["secret"], vector["project_id"], json.loads(vector["event"]),
                  vector["timestamp"]) == vector["signature"]
with Client(creds["url"], creds["api_key"], creds["agent_id"], creds["agent_secret"]) as rc:
    verdict = rc.decide({"service": "installed", "action": "read", "payload": {"id": 1},
                         "run_id": "i1"}, wait_ms=3000, timeout_s=60)
server = sorted(m for m in sys.modules if m.split(".")[0] in ("ratchet", "gateway", "streams"))
print(json.dumps({"action": verdict.action, "server_modules": server,
                  "models": models.__file__}))
"""


def test_pip_install_into_a_fresh_venv_with_its_own_models(
        tmp_path: Path, sdk_stack: Credentials) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(ROOT / "clients" / "python")],
                             capture_output=True, text=True, timeout=240, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    app = tmp_path / "app"
    (app / "models").mkdir(parents=True)
    (app / "models" / "__init__.py").write_text('OWNER = "the application"\n')
    vectors = json.loads((ROOT / "docs" / "signature-vectors.json").read_text())
    creds = {k: getattr(sdk_stack, k) for k in ("url", "api_key", "agent_id", "agent_secret")}
    run = subprocess.run(
        [python, "-c", APP, json.dumps(creds), json.dumps(vectors["events"][1])],
        cwd=app, capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(app)},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["action"] == "allow"
    assert out["server_modules"] == []
    assert out["models"] == str(app / "models" / "__init__.py")
