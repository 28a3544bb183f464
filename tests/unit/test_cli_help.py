"""``ratchet <command> --help`` says what each option does and its default, and every command
has a description (``ratchet demo`` and ``ratchet gateway`` lacked them)."""

from __future__ import annotations

import argparse

import pytest

from ratchet.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_of_demo_says_what_it_does_and_its_default() -> None:
    demo = _subparsers(build_parser())["demo"]
    for action in demo._actions:
        if action.dest == "help":
            continue
        assert action.help, f"--{action.dest} has no help"
        if action.default not in (None, False) and not isinstance(action.default, bool):
            assert "default" in action.help, f"--{action.dest}: {action.help!r}"
    text = demo.format_help()
    for shown in ("(default 12)", "(default 250)", "(default 7)", "(default 0.05)"):
        assert shown in " ".join(text.split())


@pytest.mark.parametrize("name", ["replay", "tune", "demo", "gateway", "worker", "explain"])
def test_commands_have_a_description(name: str) -> None:
    command = _subparsers(build_parser())[name]
    assert command.description and len(command.description) > 40
