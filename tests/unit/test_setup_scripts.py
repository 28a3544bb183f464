"""What ``./scripts/demo`` and ``./scripts/test`` install on a fresh machine (README, "Two
commands"): both install redis-server when missing; only the test script installs promtool
(package prometheus), setpriv (util-linux) and Node.js/npm, which only the tests need.

The scripts run for real under bash with a PATH that holds nothing but stubs: ``apt-get``
records what it was asked to install, ``id`` says root, the virtualenv is a stub whose
``python`` and ``ratchet`` only print what they were asked to run — nothing is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _run(script: str, tmp_path: Path, *, have: tuple[str, ...] = ()) -> tuple[str, str]:
    """(apt-get's log, the script's stdout) of ``scripts/<script>`` on a machine with only the
    commands in ``have`` (of redis-server, promtool, setpriv, npm) installed."""
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "apt.log"
    log.touch()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    _stub(bin_dir / "id", 'echo 0')
    _stub(bin_dir / "apt-get", f'echo "$*" >> {log}')
    _stub(bin_dir / "service", "true")
    for name in have:
        _stub(bin_dir / name, "true")
    _stub(venv / "bin" / "python", 'echo "python $*"')
    _stub(venv / "bin" / "ratchet", 'echo "ratchet $*"')
    (venv / "bin" / "activate").write_text(f'PATH="{venv / "bin"}:$PATH"\n')
    (venv / ".ratchet-installed").touch()  # newer than pyproject.toml: no pip install
    done = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
        env={"PATH": str(bin_dir), "RATCHET_VENV": str(venv), "HOME": str(tmp_path)},
        timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return log.read_text(), done.stdout


def test_the_demo_installs_redis_only(tmp_path: Path) -> None:
    apt, out = _run("demo", tmp_path)
    installs = [line for line in apt.splitlines() if "install" in line]
    assert len(installs) == 1 and "redis-server" in installs[0], apt
    assert "prometheus" not in apt and "npm" not in apt and "nodejs" not in apt
    assert "util-linux" not in apt
    assert out.strip() == "ratchet demo --help"


def test_the_tests_install_redis_promtool_setpriv_and_node(tmp_path: Path) -> None:
    apt, out = _run("test", tmp_path)
    assert "redis-server" in apt and "prometheus" in apt and "nodejs npm" in apt, apt
    assert "util-linux" in apt, apt
    assert out.strip() == "python -m pytest -q -p no:cacheprovider --help"


def test_nothing_is_installed_when_everything_is_there(tmp_path: Path) -> None:
    apt, _ = _run("test", tmp_path, have=("redis-server", "promtool", "setpriv", "npm"))
    assert apt == ""
    assert os.access(ROOT / "scripts" / "test", os.X_OK) and os.access(
        ROOT / "scripts" / "demo", os.X_OK)
