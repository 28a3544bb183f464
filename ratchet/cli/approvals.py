"""``ratchet approvals``: the queue of paused events, over the gateway's HTTP API.

Unlike the other admin commands this one does not talk to Redis: a decision has to reach the
workers (topic ``feedback``) and the project's audit log exactly as one made over the API, under
the name of the admin key that made it. So it is a small HTTP client of the gateway
(``RATCHET_GATEWAY_URL``, ``RATCHET_ADMIN_KEY``)::

    ratchet approvals list                       # what waits, oldest first
    ratchet approvals show EVENT_ID              # one of them in words (the explanation)
    ratchet approvals approve EVENT_ID... --reason "new optional field, deployed today"
    ratchet approvals reject EVENT_ID... --reason "not ours"

``list --format ids`` prints event ids only, for ``xargs``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from models.errors import ConfigError, RatchetError, UnavailableError
from ratchet.config.settings import Settings, get_settings

__all__ = ["Gateway", "GatewayError", "reason_summary", "register"]

#: Items per page the gateway serves at most (``GET /v1/approvals?limit=``).
PAGE_MAX = 500


class GatewayError(RatchetError):
    """The gateway refused a request; the message is its own, with the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Gateway:
    """The few calls of the HTTP API this command needs, with an admin key."""

    url: str
    key: str
    timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None) -> Gateway:
        base = (url or settings.gateway_url).rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"gateway URL {base!r} is not http(s)://host[:port]; fix "
                              "--url or RATCHET_GATEWAY_URL")
        if not settings.admin_key:
            raise ConfigError(
                "RATCHET_ADMIN_KEY is not set: export an admin key of the project "
                "(`ratchet keys create --project PRJ --role admin` prints one)")
        return cls(base, str(settings.admin_key))

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON answer of one request; :class:`GatewayError` for a 4xx/5xx,
        :class:`UnavailableError` when the gateway cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise UnavailableError(
                f"cannot reach the gateway at {self.url} ({why}); is it running? "
                "Set --url or RATCHET_GATEWAY_URL") from None

    def paused(self, limit: int, everything: bool, agent: str | None = None
               ) -> tuple[list[dict[str, Any]], bool]:
        """Paused verdicts (of ``agent`` only, when given), oldest first: ``limit`` of them,
        or all with ``everything``; and whether more wait after them. The API lists a
        project's, so one agent's are picked page by page until ``limit`` of them are found."""
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while everything or len(out) < limit:
            want = PAGE_MAX if everything or agent else min(limit - len(out), PAGE_MAX)
            query: dict[str, Any] = {"limit": want}
            if cursor:
                query["cursor"] = cursor
            page = self.call("GET", "/v1/approvals?" + urlencode(query))
            items = [v for v in page.get("items") or []
                     if agent is None or v.get("agent_id") == agent]
            if not everything and len(out) + len(items) > limit:
                return out + items[:limit - len(out)], True
            out.extend(items)
            cursor = page.get("next_cursor")
            if not cursor or not page.get("items"):
                return out, False
        return out, True


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, never followed: urllib would resend the admin key to wherever
    it points (another host, plain http)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _refusal(exc: urllib.error.HTTPError) -> GatewayError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    text = f"the gateway answered {exc.code}: {message or exc.reason}"
    if 300 <= exc.code < 400:
        text = (f"the gateway answered {exc.code} (a redirect to "
                f"{exc.headers.get('Location', '?')}): not followed with the admin key; point "
                "--url or RATCHET_GATEWAY_URL at the gateway itself")
    elif exc.code == 401:
        text += " (is RATCHET_ADMIN_KEY a current key of the project?)"
    elif exc.code == 403:
        text += " (RATCHET_ADMIN_KEY must be an admin key, not an agent's ingest key)"
    return GatewayError(exc.code, text)


def reason_summary(verdict: Mapping[str, Any]) -> str:
    """Why an event waits, in one short cell: ``markov 19.9>14.0 bits``, ``guardrail:pii
    (pii.email)``…"""
    out: list[str] = []
    for reason in verdict.get("reasons") or []:
        source = str(reason.get("source", "?"))
        detail = reason.get("detail") or {}
        if source == "markov":
            out.append(f"markov {float(verdict.get('score', 0)):.1f}>"
                       f"{float(verdict.get('threshold', 0)):.1f} bits")
        elif isinstance(detail, Mapping) and detail.get("rule"):
            out.append(f"{source} ({detail['rule']})")
        else:
            out.append(source)
    return ", ".join(out) or "-"


def _age(decided_at: Any, now: float) -> str:
    try:
        seconds = max(0.0, now - float(decided_at))
    except (TypeError, ValueError):
        return "?"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _cmd_list(args: argparse.Namespace) -> int:
    gw = Gateway.from_settings(get_settings(), args.url)
    items, more = gw.paused(args.limit, args.all, args.agent)
    if more:  # on stderr: the listing itself stays what a script reads
        print(f"(the {args.limit} oldest paused events; more wait: --all lists every one)",
              file=sys.stderr)
    if args.format == "json":
        for v in items:
            print(json.dumps(v, sort_keys=True))
        return 0
    if args.format == "ids":
        for v in items:
            print(v.get("event_id", ""))
        return 0
    if not items:
        print("no paused events" + (f" of agent {args.agent}" if args.agent else ""),
              file=sys.stderr)
        return 0
    now = time.time()
    rows = [("EVENT", "AGENT", "RUN", "CHAIN", "MODE", "WAITING", "WHY")]
    rows += [(str(v.get("event_id", "")), str(v.get("agent_id", "")), str(v.get("run_id", "")),
              str(v.get("chain", "")), str(v.get("mode", "")), _age(v.get("decided_at"), now),
              reason_summary(v)) for v in items]
    print(_table(rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    gw = Gateway.from_settings(get_settings(), args.url)
    body = gw.call("GET", f"/v1/verdicts/{quote(args.event_id, safe='')}?explain=true")
    if args.json:
        print(json.dumps(body, sort_keys=True, indent=2))
        return 0
    approval = body.get("approval")
    print((body.get("explain") or {}).get("text", "").rstrip())
    if approval:
        print(f"\ndecided: {approval.get('decision')} by {approval.get('actor')}"
              f" — {approval.get('reason') or 'no reason given'}")
    elif (body.get("verdict") or {}).get("action") == "pause":
        print(f"\nwaiting: ratchet approvals approve|reject {args.event_id} --reason ...")
    return 0


#: A decision in the past tense.
_DONE = {"approve": "approved", "reject": "rejected"}


def _decide(args: argparse.Namespace, decision: str) -> int:
    gw = Gateway.from_settings(get_settings(), args.url)
    done = _DONE[decision]
    failed = 0
    for event_id in args.event_ids:
        try:
            gw.call("POST", f"/v1/approvals/{quote(event_id, safe='')}",
                    {"decision": decision, "reason": args.reason})
        except GatewayError as exc:
            failed += 1
            print(f"{event_id}: not {done}: {exc}", file=sys.stderr)
            continue
        print(f"{event_id}: {done}")
    if failed and len(args.event_ids) > 1:
        print(f"{failed} of {len(args.event_ids)} not {done}", file=sys.stderr)
    return 1 if failed else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = subparsers.add_parser(
        "approvals", help="paused events: list, show, approve, reject (over the gateway's API)",
        description="The queue of paused events of the project RATCHET_ADMIN_KEY belongs to, "
                    "through the gateway at RATCHET_GATEWAY_URL (default "
                    "http://127.0.0.1:8080): decisions are published to the workers and "
                    "audited exactly as over the HTTP API, under the key's name. Approving "
                    "teaches the baseline the event (a false alarm); rejecting keeps it out.",
    )
    sub = cmd.add_subparsers(dest="approvals_command", metavar="ACTION")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the gateway (default RATCHET_GATEWAY_URL)")

    ls = sub.add_parser("list", parents=[common], help="paused events, oldest first")
    ls.add_argument("--limit", type=_positive, default=100, help="at most this many (100)")
    ls.add_argument("--all", action="store_true", help="every paused event (pages through)")
    ls.add_argument("--agent", help="only this agent's events")
    ls.add_argument("--format", choices=("table", "json", "ids"), default="table",
                    help="table (default), json (one verdict per line) or ids (event ids, "
                         "one per line, e.g. for xargs)")
    ls.set_defaults(func=_cmd_list)

    show = sub.add_parser("show", parents=[common],
                          help="one event's verdict in words, and its decision if any")
    show.add_argument("event_id")
    show.add_argument("--json", action="store_true", help="the API's answer as JSON")
    show.set_defaults(func=_cmd_show)

    for decision, what in (("approve", "release the events and let the baseline learn them"),
                           ("reject", "keep the events out (the agent's call stays refused)")):
        p = sub.add_parser(decision, parents=[common], help=what)
        p.add_argument("event_ids", nargs="+", metavar="EVENT_ID")
        p.add_argument("--reason", default="", help="why (kept in the audit log)")
        p.set_defaults(func=lambda a, d=decision: _decide(a, d))


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
