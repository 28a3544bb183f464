"""Every models.guardrails module declares its public names (its doctests run with --doctest-modules)."""

from __future__ import annotations

import importlib
import pkgutil

import models.guardrails as package

MODULES = sorted(
    f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
)


def test_every_module_declares_all() -> None:
    for name in [package.__name__, *MODULES]:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), name
        for exported in module.__all__:
            assert hasattr(module, exported), (name, exported)
