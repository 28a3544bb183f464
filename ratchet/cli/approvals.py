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

Whatever answers at the URL is not trusted to be the gateway (attack run 9, R8): every string
printed from an answer has its control and invisible characters escaped, each command has one
deadline (``--timeout``), an answer is read up to :data:`BODY_MAX` bytes, a page of the wrong
shape or a cursor seen before ends the command with status 2, and a scan reads at most
``--max-pages`` pages.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from models.errors import ConfigError, RatchetError, UnavailableError
from ratchet.config.settings import Settings, get_settings

__all__ = ["BODY_MAX", "PAGES_MAX", "BadAnswerError", "DeadlineError", "Gateway",
           "GatewayError", "Listing", "reason_summary", "register", "terminal_safe"]

#: Items per page the gateway serves at most (``GET /v1/approvals?limit=``).
PAGE_MAX = 500
#: The most bytes of one answer read (a page of 500 verdicts is well under 1 MiB).
BODY_MAX = 16 * 1024 * 1024
#: Pages one ``list`` reads at most unless ``--max-pages`` says otherwise: 5,000 paused events,
#: about 5,300 tokens of the project's ``api`` bucket (a ``standard`` tier holds 6,000).
PAGES_MAX = 10
#: The longest ``Retry-After`` a scan sleeps through (when the deadline leaves time for it).
RETRY_AFTER_MAX_S = 10.0

#: Characters never written to a terminal as they are: C0 and C1 controls (ESC starts the
#: escape sequences that retitle, recolour or rewrite a terminal), DEL, and invisible or
#: direction-changing formatting characters (bidi overrides and isolates, zero widths).
_UNSAFE = re.compile("[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f"
                     "\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def terminal_safe(value: Any, lines: bool = False) -> str:
    r"""``value`` as text that cannot act on a terminal: each unsafe character written as an
    escape (``\x1b``, ``\u202e``), visible, instead of being sent. ``lines`` keeps line breaks.

    >>> terminal_safe("a\x1b]0;title\x07b"), terminal_safe("x\u202ey\nz", lines=True)
    ('a\\x1b]0;title\\x07b', 'x\\u202ey\nz')
    """
    text = value if isinstance(value, str) else str(value)

    def escape(m: re.Match[str]) -> str:
        ch = m.group()
        if lines and ch == "\n":
            return ch
        return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"
    return _UNSAFE.sub(escape, text)


class GatewayError(RatchetError):
    """The gateway refused a request; the message is its own, with the status."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class BadAnswerError(UnavailableError):
    """What answered is not the gateway's API: not JSON, the wrong shape, a cursor repeated,
    larger than :data:`BODY_MAX`."""


class DeadlineError(UnavailableError):
    """The command's deadline (``--timeout``) passed before the gateway had answered."""


@dataclass
class Listing:
    """What ``list`` found: the matching verdicts, oldest first, and how far it looked."""

    items: list[dict[str, Any]]
    #: More (matching) events may wait after these.
    more: bool = False
    #: Paused events read, matching or not, and in how many pages.
    scanned: int = 0
    pages: int = 0
    #: Why the scan ended before the end of the queue, in words (None: it did not).
    stopped: str | None = None
    #: The gateway refused or did not answer in time: the listing is incomplete (status 2).
    failed: bool = False


@dataclass
class Gateway:
    """The few calls of the HTTP API this command needs, with an admin key. ``timeout_s`` is
    one deadline for every request the command makes, counted from when this is made."""

    url: str
    key: str
    timeout_s: float = 30.0
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def left(self) -> float:
        """Seconds before the deadline; :class:`DeadlineError` once it has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlineError(
                f"the gateway at {self.url} did not answer within the command's deadline of "
                f"{self.timeout_s:g} s; is --url / RATCHET_GATEWAY_URL the gateway, and is it "
                "overloaded? (--timeout sets the deadline)")
        return left

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None,
                      timeout_s: float = 30.0) -> Gateway:
        base = (url or settings.gateway_url).rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"gateway URL {base!r} is not http(s)://host[:port]; fix "
                              "--url or RATCHET_GATEWAY_URL")
        if not settings.admin_key:
            raise ConfigError(
                "RATCHET_ADMIN_KEY is not set: export an admin key of the project "
                "(`ratchet keys create --project PRJ --role admin` prints one)")
        return cls(base, str(settings.admin_key), timeout_s)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON answer of one request; :class:`GatewayError` for a 4xx/5xx,
        :class:`UnavailableError` when the gateway cannot be reached."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=self.left()) as resp:
                raw = self._read(resp)
        except urllib.error.HTTPError as exc:
            try:
                raw = self._read(exc)
            except (BadAnswerError, OSError):
                raw = b""
            raise _refusal(exc, raw) from None
        except RatchetError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            if isinstance(why, TimeoutError):
                self.left()  # the deadline, said as such
            raise UnavailableError(
                f"cannot reach the gateway at {self.url} ({terminal_safe(why)}); is it "
                "running? Set --url or RATCHET_GATEWAY_URL") from None
        try:
            return json.loads(raw or b"null")
        except ValueError:  # UnicodeDecodeError too
            raise BadAnswerError(
                f"the gateway at {self.url} answered {path.split('?')[0]} with something that "
                "is not JSON; is --url / RATCHET_GATEWAY_URL the gateway?") from None

    def _read(self, resp: Any) -> bytes:
        """The body, read piece by piece: refused past :data:`BODY_MAX` bytes (before they are
        all read), and within the deadline however slowly it arrives."""
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > BODY_MAX:
            raise self._too_large()
        read = getattr(resp, "read1", None) or resp.read
        parts: list[bytes] = []
        size = 0
        while True:
            _settimeout(resp, self.left())
            try:
                chunk = read(65_536)
            except TimeoutError:
                self.left()
                raise
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            if size > BODY_MAX:
                raise self._too_large()
            parts.append(chunk)

    def _too_large(self) -> BadAnswerError:
        return BadAnswerError(
            f"the gateway at {self.url} sent an answer over {BODY_MAX // (1 << 20)} MiB, more "
            "than any of its pages; not read. Is --url / RATCHET_GATEWAY_URL the gateway?")

    def _page(self, query: dict[str, Any]) -> Any:
        """One page of ``GET /v1/approvals``; a 429 waited out (its ``Retry-After``) while the
        wait is short and fits in the deadline."""
        while True:
            try:
                return self.call("GET", "/v1/approvals?" + urlencode(query))
            except GatewayError as exc:
                wait = exc.retry_after_s
                if (exc.status != 429 or wait is None or wait > RETRY_AFTER_MAX_S
                        or wait >= self.left()):
                    raise
                time.sleep(wait)

    def paused(self, limit: int, everything: bool, agent: str | None = None,
               max_pages: int = PAGES_MAX) -> Listing:
        """Paused verdicts (of ``agent`` only, when given: the API's ``agent_id`` filter),
        oldest first: ``limit`` of them, or all with ``everything`` — at most ``max_pages``
        pages: each costs the project's ``api`` bucket about a token per kilobyte, which the
        admins need too. A 429 or the deadline in the middle of the listing ends it with what
        was found (``failed``); an answer that is not a page of the API raises
        :class:`BadAnswerError`."""
        found = Listing([])
        seen: set[str] = set()
        cursor: str | None = None
        unfiltered = False  # a gateway that answered other agents' events too: pages of 500
        while everything or len(found.items) < limit:
            if found.pages >= max_pages:
                found.more = True
                found.stopped = (f"stopped after {found.pages} page(s), {found.scanned:,} "
                                 "paused events scanned (--max-pages); more may wait")
                return found
            want = (PAGE_MAX if everything or unfiltered
                    else min(limit - len(found.items), PAGE_MAX))
            query: dict[str, Any] = {"limit": want}
            if agent is not None:
                query["agent_id"] = agent
            if cursor:
                query["cursor"] = cursor
            try:
                page = self._page(query)
            except (GatewayError, DeadlineError) as exc:
                if found.pages == 0 or (isinstance(exc, GatewayError) and exc.status != 429):
                    raise
                found.more, found.failed = True, True
                found.stopped = (f"stopped after {found.pages} page(s), {found.scanned:,} "
                                 f"paused events scanned: {exc}")
                return found
            batch, cursor = self._checked(page, seen)
            found.pages += 1
            found.scanned += len(batch)
            # the gateway filters; an item of another agent (a gateway that ignored the
            # filter) is never shown as this agent's
            items = [v for v in batch if agent is None or v.get("agent_id") == agent]
            unfiltered = unfiltered or len(items) < len(batch)
            if not everything and len(found.items) + len(items) > limit:
                found.items += items[:limit - len(found.items)]
                found.more = True
                return found
            found.items += items
            if cursor is None:
                return found
        found.more = True
        return found

    def _checked(self, page: Any, seen: set[str]) -> tuple[list[dict[str, Any]], str | None]:
        """A page's items and next cursor, once it is sure they are ones: a cursor already
        followed, or a cursor after no items, would page forever."""
        items = page.get("items") if isinstance(page, dict) else None
        cursor = page.get("next_cursor") if isinstance(page, dict) else None
        if (not isinstance(items, list) or not all(isinstance(v, dict) for v in items)
                or not (cursor is None or isinstance(cursor, str))):
            raise BadAnswerError(
                f"the gateway at {self.url} answered GET /v1/approvals with something other "
                "than a page of paused events ({\"items\": [...], \"next_cursor\": ...}); is "
                "--url / RATCHET_GATEWAY_URL the gateway?")
        if cursor and not items:
            raise BadAnswerError(f"the gateway at {self.url} answered a page with no events but "
                                 "a next cursor; stopped (it would page forever)")
        if cursor and cursor in seen:
            raise BadAnswerError(f"the gateway at {self.url} answered a cursor it had answered "
                                 "before; stopped (it would page forever)")
        if cursor:
            seen.add(cursor)
        return items, cursor or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, never followed: urllib would resend the admin key to wherever
    it points (another host, plain http)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _settimeout(resp: Any, seconds: float) -> None:
    """The socket under ``resp`` waits at most ``seconds`` for its next bytes (best effort:
    the deadline is checked between reads in any case)."""
    fp = getattr(resp, "fp", None)
    sock = getattr(getattr(fp, "raw", None), "_sock", None)
    if sock is None:  # an HTTPError wraps the response
        sock = getattr(getattr(getattr(fp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        try:
            sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass


def _retry_after(raw: str | None) -> float | None:
    try:
        value = float(raw or "")
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _refusal(exc: urllib.error.HTTPError, raw: bytes) -> GatewayError:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str):
        message = None
    retry = _retry_after(exc.headers.get("Retry-After")) if exc.code == 429 else None
    text = f"the gateway answered {exc.code}: {terminal_safe(message or exc.reason)[:500]}"
    if 300 <= exc.code < 400:
        text = (f"the gateway answered {exc.code} (a redirect to "
                f"{terminal_safe(exc.headers.get('Location', '?'))[:200]}): not followed with "
                "the admin key; point --url or RATCHET_GATEWAY_URL at the gateway itself")
    elif exc.code == 401:
        text += " (is RATCHET_ADMIN_KEY a current key of the project?)"
    elif exc.code == 403:
        text += " (RATCHET_ADMIN_KEY must be an admin key, not an agent's ingest key)"
    elif exc.code == 429 and retry is not None:
        text += f" (Retry-After: {retry:g} s)"
    return GatewayError(exc.code, text, retry)


def reason_summary(verdict: Mapping[str, Any]) -> str:
    """Why an event waits, in one short cell: ``markov 19.9>14.0 bits``, ``guardrail:pii
    (pii.email)``…"""
    out: list[str] = []
    reasons = verdict.get("reasons")
    for reason in reasons if isinstance(reasons, list) else []:
        if not isinstance(reason, Mapping):
            continue
        source = str(reason.get("source", "?"))
        detail = reason.get("detail") or {}
        if source == "markov":
            out.append(f"markov {_number(verdict.get('score')):.1f}>"
                       f"{_number(verdict.get('threshold')):.1f} bits")
        elif isinstance(detail, Mapping) and detail.get("rule"):
            out.append(f"{source} ({detail['rule']})")
        else:
            out.append(source)
    return ", ".join(out) or "-"


def _number(value: Any) -> float:
    try:
        return float(value or 0)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _age(decided_at: Any, now: float) -> str:
    try:
        seconds = max(0.0, now - float(decided_at))
    except (TypeError, ValueError, OverflowError):
        return "?"
    if not math.isfinite(seconds):
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
    gw = Gateway.from_settings(get_settings(), args.url, args.timeout)
    found = gw.paused(args.limit, args.all, args.agent, args.max_pages)
    items = found.items
    # notes on stderr: the listing itself stays what a script reads
    if found.stopped:
        print(f"ratchet: {'error: ' if found.failed else ''}{found.stopped}", file=sys.stderr)
    elif found.more:
        print(f"(the {args.limit} oldest paused events; more wait: --all lists every one)",
              file=sys.stderr)
    status = 2 if found.failed else 0
    if args.format == "json":
        for v in items:  # ensure_ascii: every control character is written as \uXXXX
            print(json.dumps(v, sort_keys=True))
        return status
    if args.format == "ids":
        for v in items:
            print(terminal_safe(v.get("event_id", "")))
        return status
    if not items:
        print("no paused events" + (f" of agent {terminal_safe(args.agent)}" if args.agent
                                    else "") + (" found" if found.stopped else ""),
              file=sys.stderr)
        return status
    now = time.time()
    rows: list[tuple[str, ...]] = [("EVENT", "AGENT", "RUN", "CHAIN", "MODE", "WAITING", "WHY")]
    rows += [tuple(terminal_safe(c) for c in (
        v.get("event_id", ""), v.get("agent_id", ""), v.get("run_id", ""), v.get("chain", ""),
        v.get("mode", ""), _age(v.get("decided_at"), now), reason_summary(v))) for v in items]
    print(_table(rows))
    return status


def _cmd_show(args: argparse.Namespace) -> int:
    gw = Gateway.from_settings(get_settings(), args.url, args.timeout)
    body = gw.call("GET", f"/v1/verdicts/{quote(args.event_id, safe='')}?explain=true")
    if args.json:  # ensure_ascii: every control character is written as \uXXXX
        print(json.dumps(body, sort_keys=True, indent=2))
        return 0
    approval = body.get("approval") if isinstance(body, dict) else None
    explain = body.get("explain") if isinstance(body, dict) else None
    verdict = body.get("verdict") if isinstance(body, dict) else None
    text = explain.get("text") if isinstance(explain, dict) else None
    if (not isinstance(body, dict) or not isinstance(text, (str, type(None)))
            or not isinstance(approval, (dict, type(None)))
            or not isinstance(verdict, (dict, type(None)))):
        raise BadAnswerError(
            f"the gateway at {gw.url} answered GET /v1/verdicts/… with something other than "
            "a verdict; is --url / RATCHET_GATEWAY_URL the gateway?")
    print(terminal_safe((text or "").rstrip(), lines=True))
    if approval:
        print(terminal_safe(
            f"\ndecided: {approval.get('decision')} by {approval.get('actor')}"
            f" — {approval.get('reason') or 'no reason given'}", lines=True))
    elif (verdict or {}).get("action") == "pause":
        print(f"\nwaiting: ratchet approvals approve|reject {terminal_safe(args.event_id)} "
              "--reason ...")
    return 0


#: A decision in the past tense.
_DONE = {"approve": "approved", "reject": "rejected"}


def _decide(args: argparse.Namespace, decision: str) -> int:
    gw = Gateway.from_settings(get_settings(), args.url, args.timeout)
    done = _DONE[decision]
    failed = 0
    for event_id in args.event_ids:
        try:
            gw.call("POST", f"/v1/approvals/{quote(event_id, safe='')}",
                    {"decision": decision, "reason": args.reason})
        except GatewayError as exc:
            failed += 1
            print(f"{terminal_safe(event_id)}: not {done}: {exc}", file=sys.stderr)
            continue
        print(f"{terminal_safe(event_id)}: {done}")
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
    common.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                        help="one deadline for the whole command, every request included "
                             "(30)")

    ls = sub.add_parser("list", parents=[common], help="paused events, oldest first")
    ls.add_argument("--limit", type=_positive, default=100, help="at most this many (100)")
    ls.add_argument("--all", action="store_true", help="every paused event (pages through)")
    ls.add_argument("--agent", help="only this agent's events (GET /v1/approvals?agent_id=)")
    ls.add_argument("--max-pages", type=_positive, default=PAGES_MAX, metavar="N",
                    help=f"read at most N pages of {PAGE_MAX} ({PAGES_MAX}); each costs the "
                         "project's api rate limit about one token per KB, which the admins "
                         "share")
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


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {raw!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600 seconds")
    return value


def _positive(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {raw!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
