"""The one logging setup: JSON lines off a terminal, human lines on one, a clear error otherwise."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from models.errors import ConfigError
from ratchet.telemetry.logs import logging_config, resolve_format, setup_logging


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_json_lines_carry_the_standard_and_the_extra_fields(restore_root: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", out)
    logging.getLogger("ratchet.test").info("hello %s", "world", extra={"project": "p1", "n": 3})
    logging.getLogger("ratchet.test").debug("not shown at INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("ratchet.test").exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["message"] == "hello world" and first["level"] == "INFO"
    assert first["logger"] == "ratchet.test" and first["project"] == "p1" and first["n"] == 3
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert lines[1]["level"] == "ERROR" and "ValueError: boom" in lines[1]["exc_info"]


def test_auto_is_text_on_a_terminal_and_json_elsewhere(restore_root: None) -> None:
    tty = _Tty()
    setup_logging("INFO", "auto", tty)
    logging.getLogger("ratchet.test").warning("readable", extra={"agent": "a1"})
    line = tty.getvalue().strip()
    assert " WARNING ratchet.test: readable agent=a1" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)

    pipe = io.StringIO()
    setup_logging("INFO", "auto", pipe)
    logging.getLogger("ratchet.test").warning("parsed")
    assert json.loads(pipe.getvalue())["message"] == "parsed"
    assert logging_config("INFO", "text", pipe)["formatters"]["ratchet"]["()"].__name__ == (
        "TextFormatter"
    )


def test_bad_format_or_level_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="RATCHET_LOG_FORMAT='xml'"):
        resolve_format("xml")
    with pytest.raises(ConfigError, match="RATCHET_LOG_LEVEL='LOUD'"):
        setup_logging("LOUD", "json", io.StringIO())


def test_the_ratchet_command_logs_json_lines_when_asked() -> None:
    """A real process: ``ratchet`` sets up logging from RATCHET_LOG_FORMAT before its command."""
    code = (
        "import argparse, logging, sys\n"
        "import ratchet.cli.main\n"
        "cli = sys.modules['ratchet.cli.main']\n"
        "def build():\n"
        "    parser = argparse.ArgumentParser()\n"
        "    parser.add_argument('-v', action='store_true', dest='verbose')\n"
        "    sub = parser.add_subparsers(dest='command')\n"
        "    s = sub.add_parser('hello')\n"
        "    s.set_defaults(func=lambda a: logging.getLogger('ratchet.x').info('hi',"
        " extra={'k': 1}) or 0)\n"
        "    return parser\n"
        "cli.build_parser = build\n"
        "sys.exit(cli.main(['hello']))\n"
    )
    env = {"RATCHET_LOG_FORMAT": "json", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["message"] == "hi" and record["k"] == 1 and record["logger"] == "ratchet.x"
