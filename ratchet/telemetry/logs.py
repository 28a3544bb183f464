"""One logging setup for every Ratchet process (gateway, worker, webhook dispatcher, CLI).

Why one place: operators read the logs of all processes with one parser. Every line is either a
JSON object (one per line, for log shippers) or a human line (on a terminal), chosen by
``RATCHET_LOG_FORMAT``:

* ``json`` — one JSON object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``message``
  and every structured field the call passed with ``extra=`` (e.g. the access and decision logs);
* ``text`` — ``time level logger: message key=value ...``;
* ``auto`` (default) — ``text`` when the log stream (stderr) is a terminal, else ``json``: a
  container's logs are JSON, a developer's terminal is readable.

Logs go to stderr, so commands that print results on stdout stay pipeable. The Faust worker gets
the same configuration through :func:`logging_config` (``faust.Worker(logging_config=...)``).

>>> resolve_format("auto", tty=False), resolve_format("auto", tty=True), resolve_format("text")
('json', 'text', 'text')
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from models.errors import ConfigError

__all__ = [
    "FORMATS",
    "JsonLineFormatter",
    "TextFormatter",
    "logging_config",
    "resolve_format",
    "setup_logging",
]

#: Accepted values of ``RATCHET_LOG_FORMAT``.
FORMATS: tuple[str, ...] = ("auto", "json", "text")

_RESERVED = frozenset(RESERVED_ATTRS) | {"taskName", "color_message"}


def resolve_format(fmt: str, *, tty: bool = False) -> str:
    """``json`` or ``text`` for a configured format (``auto`` looks at ``tty``)."""
    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(
            f"RATCHET_LOG_FORMAT={fmt!r} is not one of {', '.join(FORMATS)}; fix or unset it"
        )
    if fmt == "auto":
        return "text" if tty else "json"
    return fmt


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")


class JsonLineFormatter(OrjsonFormatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message`` + ``extra`` fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_RESERVED),
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = _iso(record.created)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """``2026-12-02 14:10:23,123 INFO ratchet.worker: message key=value ...`` for terminals."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{k}={v}" for k, v in record.__dict__.items()
            if k not in _RESERVED and not k.startswith("_")
        ]
        if not fields:
            return line
        head, sep, tail = line.partition("\n")  # keep tracebacks below the fields
        return f"{head} {' '.join(fields)}{sep}{tail}"


def logging_config(level: str | int, fmt: str, stream: IO[str] | None = None) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: one handler on ``stream`` (default stderr)
    with the formatter of ``fmt`` (``auto`` resolved against that stream), at ``level``."""
    out = sys.stderr if stream is None else stream
    isatty = getattr(out, "isatty", None)
    chosen = resolve_format(fmt, tty=bool(isatty and isatty()))
    formatter = JsonLineFormatter if chosen == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"ratchet": {"()": formatter}},
        "handlers": {
            "ratchet": {
                "class": "logging.StreamHandler",
                "formatter": "ratchet",
                "stream": out,
            }
        },
        "root": {"level": level, "handlers": ["ratchet"]},
    }


def setup_logging(level: str | int, fmt: str, stream: IO[str] | None = None) -> None:
    """Configure the root logger of this process (replaces any handler set before)."""
    if isinstance(level, str):
        level = level.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ConfigError(
                f"RATCHET_LOG_LEVEL={level!r} is not a log level (DEBUG, INFO, WARNING, ERROR)"
            )
    logging.config.dictConfig(logging_config(level, fmt, stream))
