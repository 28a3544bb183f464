"""constraints.txt: the dependency versions the suite last passed with, which a fresh clone
(scripts/_venv.sh) and the image (deploy/Dockerfile) install. Every dependency Ratchet and its
Python SDK declare must be pinned there, inside the range pyproject.toml declares, and this
environment must be running exactly those pins — else the suite is not testing what users get."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert m, f"constraints.txt:{n}: {line!r} is not an exact pin (name==version)"
        name = canonicalize_name(m.group(1))
        assert name not in out, f"constraints.txt:{n}: {name} pinned twice"
        out[name] = m.group(2)
    return out


def declared() -> list[Requirement]:
    reqs: list[Requirement] = []
    for path in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        project = tomllib.loads(path.read_text())["project"]
        reqs += [Requirement(r) for r in project.get("dependencies", [])]
        for extra in project.get("optional-dependencies", {}).values():
            reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def test_every_declared_dependency_is_pinned_inside_its_declared_range() -> None:
    pinned = pins()
    reqs = declared()
    assert len(reqs) >= 20
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req} is declared but not pinned in constraints.txt"
        assert Version(pinned[name]) in req.specifier, (
            f"constraints.txt pins {name}=={pinned[name]}, outside the declared {req}"
        )


def test_this_environment_runs_the_pinned_versions() -> None:
    pinned = pins()
    for req in declared():
        name = canonicalize_name(req.name)
        try:
            installed = version(req.name)
        except PackageNotFoundError:  # pragma: no cover - the dev extra installs all of them
            raise AssertionError(f"{req.name} is declared but not installed") from None
        assert installed == pinned[name], (
            f"{req.name} {installed} is installed, constraints.txt pins {pinned[name]}: "
            "rerun ./scripts/test (it reinstalls when constraints.txt changes)"
        )


def test_the_setup_script_and_the_image_install_with_the_constraints() -> None:
    venv = (ROOT / "scripts" / "_venv.sh").read_text()
    installs = [line for line in venv.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)
    assert "constraints.txt -nt" in venv, "a changed constraints.txt must reinstall the venv"
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    wheel = [line for line in docker.splitlines() if "pip wheel" in line]
    assert wheel and all("-c constraints.txt" in line for line in wheel)
