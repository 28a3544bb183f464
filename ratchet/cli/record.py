"""``ratchet record``: write the events agents sent (the ``ingest`` topic) as the JSONL that
``ratchet replay`` and ``ratchet tune`` read — so a policy or an engine change can be tried on
real traffic before it goes live. The reading is :func:`ratchet.kafka.record.recorded`."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import stat
import sys
import tempfile
import time
from datetime import datetime
from typing import IO

import orjson

from models.errors import ConfigError, RatchetError
from ratchet.config.settings import Settings, get_settings
from ratchet.kafka.record import RecordFilter, RecordStats, recorded

__all__ = ["parse_since", "register"]

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}


def parse_since(raw: str, now: float) -> float:
    """``30m``, ``2h``, ``7d`` (that long ago) or an ISO 8601 time (``2026-12-05T10:00:00Z``)
    as Unix seconds.

    >>> parse_since("2h", 10_000.0), parse_since("2026-01-01T00:00:00Z", 0)
    (2800.0, 1767225600.0)
    """
    text = raw.strip()
    ago = _AGO.fullmatch(text)
    if ago:
        when_s = now - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"--since {raw!r} is neither a duration (30m, 2h, 7d) nor an ISO "
                              "8601 time (2026-12-05T10:00:00Z)") from None
        if when.tzinfo is None:
            raise ConfigError(f"--since {raw!r} has no time zone: add Z (UTC) or an offset")
        when_s = when.timestamp()
    if not when_s >= 0:  # NaN and -inf too
        raise ConfigError(f"--since {raw!r} is before 1970, older than anything a topic keeps; "
                          "leave --since out to record from the oldest event the topic keeps")
    return when_s


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "record", help="write the events agents sent (topic ingest) as JSONL for replay/tune",
        description="Read the ingest topic (RATCHET_KAFKA_BOOTSTRAP, RATCHET_TOPIC_INGEST) "
                    "with no consumer group — no worker's position moves — and write each "
                    "event as one JSON line, as `ratchet replay --input` and `ratchet tune` "
                    "read them (with its project_id; ts, when the agent sent none, is when "
                    "the gateway received it). Stops at the end of what the topic held when it "
                    "started, unless --follow. How far back it reaches is the topic's "
                    "retention (Kafka's default: 7 days).",
    )
    p.add_argument("--output", required=True, help="JSONL file to write, or - for stdout")
    p.add_argument("--project", help="only this project's events")
    p.add_argument("--agent", help="only this agent's events")
    p.add_argument("--since", help="from this long ago (30m, 2h, 7d) or this ISO 8601 time; "
                                   "default: the oldest the topic keeps")
    p.add_argument("--max-events", type=int, default=0,
                   help="stop after this many events (0 = no limit)")
    p.add_argument("--follow", action="store_true",
                   help="keep recording new events until Ctrl-C")
    p.set_defaults(func=_cmd_record, project_must_exist=False)


def _cmd_record(args: argparse.Namespace) -> int:
    settings = get_settings()
    since = parse_since(args.since, time.time()) if args.since else None
    if args.max_events < 0:
        raise ConfigError("--max-events must be 0 (no limit) or more")
    keep = RecordFilter(args.project, args.agent, since)
    stats = RecordStats()
    written = [0]
    temp: str | None = None
    if args.output == "-":
        out: IO[bytes] = sys.stdout.buffer
    else:
        temp, out = _temporary_beside(args.output)
    try:
        asyncio.run(_record(settings, keep, stats, out, args.max_events, args.follow, written))
    except KeyboardInterrupt:
        pass  # --follow ends here; what was written is kept
    except BaseException as exc:
        if temp is not None:
            out.close()
            _failed(temp, args.output, written[0], exc)
        raise
    if temp is not None:
        out.close()
        os.replace(temp, args.output)  # only now: a failure never truncates an earlier file
    where = "stdout" if args.output == "-" else args.output
    note = f", {stats.unreadable} unreadable envelope(s) skipped" if stats.unreadable else ""
    print(f"recorded {written[0]:,} event(s) from {stats.envelopes:,} envelope(s) to "
          f"{where}{note}", file=sys.stderr)
    return 0


def _temporary_beside(output: str) -> tuple[str, IO[bytes]]:
    """A new file in ``output``'s directory, created exclusively and readable by the owner only
    (0600: the events of every project, like a key file), renamed over ``output`` once the
    recording is complete. ``output`` must be a regular file or not exist: a symbolic link is
    not written through (nor replaced), a device or a directory not replaced."""
    try:
        found = os.lstat(output)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise ConfigError(f"--output {output!r}: {exc.strerror}") from None
    if found is not None and stat.S_ISLNK(found.st_mode):
        raise ConfigError(f"--output {output!r} is a symbolic link (to "
                          f"{os.readlink(output)!r}); not written through: give the path of "
                          "the file itself, or remove the link")
    if found is not None and not stat.S_ISREG(found.st_mode):
        raise ConfigError(f"--output {output!r} exists and is not a regular file; give a file "
                          "path, or - for stdout")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", suffix=".part",
                                    dir=folder)
    except OSError as exc:
        raise ConfigError(f"--output {output!r}: cannot create a file in {folder!r} "
                          f"({exc.strerror})") from None
    return temp, os.fdopen(fd, "wb")


def _failed(temp: str, output: str, written: int, exc: BaseException) -> None:
    """The recording failed: ``output`` is left as it was. The events read before the failure
    stay in ``temp`` (named in the error) when there are any; an empty ``temp`` is removed."""
    if written and isinstance(exc, RatchetError):
        kept = (f"{exc}; {output} is unchanged, the {written:,} event(s) read before the "
                f"failure are in {temp}")
        exc.args = (kept,)
        return
    try:
        os.unlink(temp)
    except OSError:
        pass
    if isinstance(exc, RatchetError):
        exc.args = (f"{exc}; nothing written, {output} is unchanged",)


async def _record(settings: Settings, keep: RecordFilter, stats: RecordStats, out: IO[bytes],
                  limit: int, follow: bool, written: list[int]) -> None:
    """Write the events; ``written[0]`` counts them (kept when Ctrl-C ends a --follow)."""
    shown = time.monotonic()
    async for event in recorded(settings, keep, stats, follow=follow):
        out.write(orjson.dumps(event) + b"\n")
        written[0] += 1
        if time.monotonic() - shown > 2 and out is not sys.stdout.buffer:
            print(f"  {written[0]:,} events...", file=sys.stderr)
            shown = time.monotonic()
        if limit and written[0] >= limit:
            return
