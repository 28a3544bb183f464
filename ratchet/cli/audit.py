"""``ratchet audit verify`` and ``ratchet audit export`` (docs/security.md "Audit log")."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from models.audit import AuditEntry
from models.errors import ConfigError
from ratchet.cli.connect import open_redis
from ratchet.config.settings import Settings, get_settings
from ratchet.platform.audit_export import parse_day, to_csv
from ratchet.store.audit import AuditLog
from ratchet.store.keys import Keys

__all__ = ["export_entries", "register"]

T = TypeVar("T")


def _with_audit(settings: Settings, work: Callable[[AuditLog], Awaitable[T]]) -> T:
    if not settings.redis_url:
        raise ConfigError("set RATCHET_REDIS_URL to the Redis that holds the audit log")
    url = settings.redis_url

    async def run() -> T:
        redis = await open_redis(settings, url)
        try:
            return await work(AuditLog(redis, Keys(settings.key_prefix), settings))
        finally:
            await redis.aclose()

    return asyncio.run(run())


async def export_entries(audit: AuditLog, project: str, from_ms: int, to_ms: int) -> list[AuditEntry]:
    """Every retained entry of ``project`` with ``from_ms <= at_ms <= to_ms``, oldest first."""
    out: list[AuditEntry] = []
    cursor: str | None = None
    while True:
        page = await audit.page(project, from_ms=from_ms, to_ms=to_ms, cursor=cursor, limit=1000)
        out.extend(page.entries)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def _cmd_verify(args: argparse.Namespace) -> int:
    project: str = args.project
    report = _with_audit(get_settings(), lambda a: a.verify(project))
    span = "no entries" if report.first_seq is None else f"seq {report.first_seq}..{report.last_seq}"
    if report.ok:
        print(f"OK: project {project}: {report.checked} entries verified ({span})")
        return 0
    print(f"TAMPERED: project {project}: {len(report.problems)} problem(s) in "
          f"{report.checked} entries ({span})")
    for p in report.problems:
        print(f"  seq {p.seq}: {p.kind}: {p.detail}")
    return 1


def _cmd_export(args: argparse.Namespace) -> int:
    project: str = args.project
    from_ms = parse_day(args.from_, end=False, option="--from")
    to_ms = parse_day(args.to, end=True, option="--to")
    entries = _with_audit(get_settings(), lambda a: export_entries(a, project, from_ms, to_ms))
    text = to_csv(entries)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        print(f"wrote {len(entries)} entries to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = subparsers.add_parser(
        "audit", help="verify or export a project's hash-chained audit log",
        description="The audit log records every state-changing action of a project as a "
                    "hash-chained JSON entry (see docs/security.md).",
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    sub.required = True
    verify = sub.add_parser(
        "verify", help="walk the chain; exit 1 and list each edited, missing or reordered seq",
    )
    verify.add_argument("--project", required=True, help="project id (prj_...)")
    verify.set_defaults(func=_cmd_verify)
    export = sub.add_parser("export", help="write entries of a date range as CSV")
    export.add_argument("--project", required=True, help="project id (prj_...)")
    export.add_argument("--from", dest="from_", required=True, metavar="DATE",
                        help="first day (YYYY-MM-DD, UTC) or ISO 8601 time")
    export.add_argument("--to", required=True, metavar="DATE",
                        help="last day, inclusive (YYYY-MM-DD, UTC) or ISO 8601 time")
    export.add_argument("--output", default=None, metavar="FILE",
                        help="write to FILE instead of stdout")
    export.set_defaults(func=_cmd_export)
