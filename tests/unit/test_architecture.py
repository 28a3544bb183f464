"""The floors: which package may import which, checked by walking every module's imports (AST).

A package imports only packages on floors strictly below its own (and modules of its own folder);
nothing in the product imports ``benchmarks``; no two modules import each other, directly or in a
circle. The table is the one in ``docs/architecture.md``; a test below keeps the two in step.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Folder (dotted package) → floor. Lower floors never import higher ones; equal floors never
#: import each other. ``models`` also may not import anything of the product but ``models``.
FLOORS: dict[str, int] = {
    "models": 0,
    "lua": 0,
    "ratchet.config": 1,
    "ratchet.telemetry": 2,
    "ratchet.store": 3,
    "ratchet.kafka": 4,
    "ratchet.platform": 5,
    "ratchet.webhooks": 5,
    "ratchet.engine": 6,
    "gateway": 7,
    "streams": 7,
    "ratchet.sandbox": 8,
    "ratchet.cli": 9,
    "benchmarks": 10,
}
#: Top-level packages whose modules are checked.
PRODUCT = ("models", "lua", "ratchet", "gateway", "streams", "benchmarks")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def floor_of(module: str) -> str | None:
    """The folder (key of FLOORS) a module belongs to: the longest matching prefix."""
    best: str | None = None
    for folder in FLOORS:
        if (module == folder or module.startswith(folder + ".")) and (
                best is None or len(folder) > len(best)):
            best = folder
    return best


def imports_of(path: Path, module: str, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Product modules imported by ``path`` (absolute and relative imports), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import submodule`` imports the submodule (and runs pkg/__init__, which is
            # not an import *of* pkg's contents unless a name is not a submodule).
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs if len(subs) == len(node.names) else [base, *subs]
        for name in targets:
            if name.split(".")[0] in PRODUCT:
                yield name, node.lineno


def resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[tuple[str, int]]]:
    known = product_modules()
    edges: dict[str, set[tuple[str, int]]] = {}
    for module, path in known.items():
        out: set[tuple[str, int]] = set()
        for name, line in imports_of(path, module, known):
            target = resolve(name, known)
            if target is not None and target != module:
                out.add((target, line))
        edges[module] = out
    return edges


def upward_imports(edges: dict[str, set[tuple[str, int]]]) -> list[str]:
    problems = []
    for module, targets in edges.items():
        here = floor_of(module)
        if here is None:
            # A module directly in ``ratchet/`` (``__init__``, ``__main__``) is the top: the CLI.
            here = "ratchet.cli"
        for target, line in targets:
            there = floor_of(target) or "ratchet.cli"
            if there == here:
                continue
            if FLOORS[there] >= FLOORS[here]:
                problems.append(f"{module}:{line} imports {target} ({here} {FLOORS[here]} → "
                                f"{there} {FLOORS[there]})")
    return sorted(problems)


def cycles(edges: dict[str, set[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_floor() -> None:
    loose = [m for m in product_modules() if floor_of(m) is None
             and m not in ("ratchet", "ratchet.__main__")]
    assert not loose, f"modules outside every floor (add them to a folder): {loose}"


def test_no_upward_imports() -> None:
    problems = upward_imports(graph())
    assert not problems, "upward or sideways imports:\n" + "\n".join(problems)


def test_no_import_circles() -> None:
    found = cycles(graph())
    assert not found, f"import circles: {found}"


def test_models_import_only_models() -> None:
    edges = graph()
    bad = [f"{m} → {t}" for m, ts in edges.items() if m.startswith("models")
           for t, _ in ts if not t.startswith("models")]
    assert not bad, bad


def test_the_checker_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself can fail: a store importing the engine is reported."""
    edges = {"ratchet.store.keys": {("ratchet.engine.engine", 3)}, "ratchet.engine.engine": set()}
    assert upward_imports(edges) == [
        "ratchet.store.keys:3 imports ratchet.engine.engine (ratchet.store 3 → ratchet.engine 6)"
    ]
    assert cycles({"a": {("b", 1)}, "b": {("a", 1)}}) == [["a", "b"]]


def test_docs_table_matches() -> None:
    """docs/architecture.md lists every floor with its number, as this test does."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    listed = {m.group(2): int(m.group(1))
              for m in re.finditer(r"^\|\s*(\d+)\s*\|\s*`([\w./]+?)/?`", text, re.MULTILINE)}
    expected = {k.replace(".", "/"): v for k, v in FLOORS.items()}
    assert listed == expected


@pytest.mark.parametrize("folder", sorted(FLOORS))
def test_floor_folders_exist(folder: str) -> None:
    assert (ROOT / folder.replace(".", "/") / "__init__.py").is_file()


def test_no_test_module_imports_another() -> None:
    """Shared fixtures live in conftest.py, helpers in *_support modules: never ``from test_x``."""
    bad = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.ImportFrom) and node.module
                    and node.module.startswith("tests.")
                    and node.module.rpartition(".")[2].startswith("test_")):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
    assert not bad, bad
