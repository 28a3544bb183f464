"""Run the docstring examples of every models.guardrails module as tests."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import models.guardrails as package

MODULES = sorted(
    f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_module_declares_all() -> None:
    for name in [package.__name__, *MODULES]:
        module = importlib.import_module(name)
        assert hasattr(module, "__all__"), name
        for exported in module.__all__:
            assert hasattr(module, exported), (name, exported)
