"""``ratchet approvals`` against whatever answers at the gateway URL (attack run 9, R8 and R4):
escape sequences in answers reach no terminal, a repeated cursor or an empty page with a cursor
ends ``--all``, one deadline bounds a slow answer, a body over the cap is refused while it
streams, bad JSON and wrong types end with status 2 and a message — and a listing (of one
agent: asked of the API with ``agent_id``) stops at ``--limit``, at ``--max-pages``, or at a 429
it cannot wait out, saying how much of the queue it read. A tiny HTTP server in a thread plays the gateway; the command runs
in-process."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ratchet.cli.main import main
from ratchet.config import settings as settings_module

ESC = "\x1b]0;PWNED-TITLE\x07\x1b[31mRED\x1b[0m\x1b[2K\r\u202e\x9b"
#: What a handler answers: status, headers, body pieces (each written and flushed).
Answer = tuple[int, dict[str, str], list[bytes]]


class _Server:
    def __init__(self) -> None:
        self.answer: Callable[[str], Answer] = lambda path: (404, {}, [b"{}"])
        self.paths: list[str] = []
        self.delay_s = 0.0


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, _Server]]:
    state = _Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            state.paths.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, pieces = state.answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            try:
                for piece in pieces:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    if state.delay_s:
                        time.sleep(state.delay_s)
            except OSError:
                pass  # the client hung up: what these tests want of it

        do_GET = do_POST = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("RATCHET_ADMIN_KEY", "rk_test")
    monkeypatch.setattr(settings_module, "_cached", None)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.delay_s = 0.0
        server.shutdown()
        server.server_close()
        settings_module._cached = None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return status, headers or {}, [json.dumps(body).encode()]


def _run(url: str, *args: str, capsys: pytest.CaptureFixture[str]
         ) -> tuple[int, str, str, float]:
    start = time.monotonic()
    status = main(["approvals", *args, "--url", url])
    out, err = capsys.readouterr()
    return status, out, err, time.monotonic() - start


def _verdict(eid: str, agent: str = "a1") -> dict[str, Any]:
    return {"event_id": eid, "agent_id": agent, "run_id": "r" + ESC, "chain": "c" + ESC,
            "mode": "locked" + ESC, "action": "pause", "decided_at": time.time() - 5,
            "reasons": [{"source": "guardrail:value" + ESC,
                         "detail": {"rule": "value.range" + ESC}}]}


def _clean(text: str) -> None:
    assert not any(ch in text for ch in "\x1b\x07\r\u202e\x9b"), repr(text)


def test_escape_sequences_in_answers_are_printed_escaped(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile

    def answer(path: str) -> Answer:
        if path.startswith("/v1/approvals?"):
            return _json({"items": [_verdict("e1" + ESC, "ag" + ESC)], "next_cursor": None})
        if path.startswith("/v1/verdicts/"):
            return _json({"verdict": _verdict("e1"), "explain": {"text": ESC + "line\nline2"},
                          "approval": {"decision": "approve", "actor": ESC, "reason": ESC}})
        return _json({"message": "msg" + ESC}, 409)
    state.answer = answer

    for args in (["list"], ["list", "--format", "ids"], ["list", "--format", "json"],
                 ["show", "e1"], ["show", "e1", "--json"], ["approve", "e1" + ESC]):
        status, out, err, _ = _run(url, *args, capsys=capsys)
        assert status == (1 if args[0] == "approve" else 0), (args, err)
        _clean(out)
        _clean(err)
    status, out, err, _ = _run(url, "list", capsys=capsys)
    assert "e1\\x1b]0;PWNED-TITLE\\x07" in out and "\\u202e" in out and "\\x9b" in out
    status, out, err, _ = _run(url, "show", "e1", capsys=capsys)
    assert "line\nline2" in out  # an explanation's line breaks are kept
    status, out, err, _ = _run(url, "approve", "e1", capsys=capsys)
    assert "answered 409: msg\\x1b]0;PWNED" in err


@pytest.mark.parametrize(("page", "says"), [
    ({"items": [{"event_id": "x"}], "next_cursor": "same"}, "a cursor it had answered before"),
    ({"items": [], "next_cursor": "c"}, "no events but a next cursor"),
])
def test_all_stops_on_a_cursor_that_would_page_forever(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str],
        page: dict[str, Any], says: str) -> None:
    url, state = hostile
    state.answer = lambda path: _json(page)
    status, out, err, took = _run(url, "list", "--all", capsys=capsys)
    assert status == 2 and says in err and out == ""
    assert len(state.paths) <= 2 and took < 5


@pytest.mark.parametrize(("answer", "says"), [
    ((200, {}, [b"[1,2"]), "is not JSON"),
    ((200, {}, [b"\xff\xfe"]), "is not JSON"),
    (_json({"items": "notalist", "next_cursor": 5}), "other than a page of paused events"),
    (_json({"items": [1, 2], "next_cursor": None}), "other than a page of paused events"),
    (_json({"items": [], "next_cursor": 5}), "other than a page of paused events"),
    (_json([1]), "other than a page of paused events"),
])
def test_bad_json_and_wrong_types_end_with_status_2(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str],
        answer: Answer, says: str) -> None:
    url, state = hostile
    state.answer = lambda path: answer
    for args in (["list"], ["list", "--all"], ["list", "--agent", "a1"]):
        status, _out, err, _ = _run(url, *args, capsys=capsys)
        assert status == 2 and says in err and "Traceback" not in err, (args, err)


def test_show_refuses_an_answer_that_is_not_a_verdict(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile
    bodies: list[Any] = [{"explain": "text", "verdict": "allow"}, {"approval": [1]}, [1], "x"]
    for body in bodies:
        answer = _json(body)

        def answering(path: str, answer: Answer = answer) -> Answer:
            return answer
        state.answer = answering
        status, _out, err, _ = _run(url, "show", "e1", capsys=capsys)
        assert status == 2 and "other than a verdict" in err, (body, err)


def test_a_slow_gateway_ends_at_the_commands_deadline(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile
    state.delay_s = 0.2  # a byte every 0.2 s: no single read ever times out
    state.answer = lambda path: (200, {}, [bytes([c]) for c in b'{"items": [], "next_cursor"'
                                           + b" " * 200 + b": null}"])
    status, _out, err, took = _run(url, "list", "--timeout", "1", capsys=capsys)
    assert status == 2 and "deadline of 1 s" in err and "--timeout" in err
    assert took < 3


def test_a_body_over_the_cap_is_refused_while_it_streams(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile
    chunk = b"A" * (1 << 20)
    state.answer = lambda path: (200, {}, [b'{"items": ["', *[chunk] * 40])
    status, _out, err, _ = _run(url, "list", "--all", capsys=capsys)
    assert status == 2 and "over 16 MiB" in err
    state.answer = lambda path: (200, {"Content-Length": str(1 << 30)}, [b"{"])
    status, _out, err, took = _run(url, "list", capsys=capsys)
    assert status == 2 and "over 16 MiB" in err and took < 5


def _queue(n: int, agent_of: Callable[[int], str]) -> Callable[[str], Answer]:
    """The approvals API over ``n`` paused events: pages as asked, cursor = next index; with
    ``agent_id``, that agent's only (as the gateway filters)."""
    def answer(path: str) -> Answer:
        q = parse_qs(urlsplit(path).query)
        at, limit = int(q.get("cursor", ["0"])[0]), int(q["limit"][0])
        agent = q.get("agent_id", [None])[0]
        rows = [i for i in range(n) if agent is None or agent_of(i) == agent]
        items = [_verdict(f"e{i}", agent_of(i)) for i in rows[at:at + limit]]
        nxt = str(at + limit) if at + limit < len(rows) else None
        return _json({"items": items, "next_cursor": nxt})
    return answer


def test_an_agent_scan_stops_at_limit_matches_and_at_max_pages(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile
    state.answer = _queue(50_000, lambda i: "mine" if i % 10 == 0 else "other")
    status, out, err, _ = _run(url, "list", "--agent", "mine", "--limit", "3",
                               "--format", "ids", capsys=capsys)
    assert status == 0 and out.split() == ["e0", "e10", "e20"] and len(state.paths) == 1
    assert "agent_id=mine" in state.paths[0] and "limit=3" in state.paths[0]

    state.paths.clear()
    status, out, err, _ = _run(url, "list", "--agent", "nobody", capsys=capsys)
    assert status == 0 and out == "" and len(state.paths) == 1 and "stopped" not in err
    state.paths.clear()
    status, out, err, _ = _run(url, "list", "--agent", "other", "--all", "--format", "ids",
                               capsys=capsys)  # 45,000 of them: pages of 500 up to the cap
    assert status == 0 and len(out.split()) == 5_000 and len(state.paths) == 10
    assert "stopped after 10 page(s), 5,000 paused events scanned (--max-pages)" in err
    state.paths.clear()
    status, out, err, _ = _run(url, "list", "--all", "--max-pages", "2", "--format", "ids",
                               capsys=capsys)
    assert status == 0 and len(out.split()) == 1_000 and len(state.paths) == 2
    assert "stopped after 2 page(s), 1,000 paused events scanned" in err


def test_a_429_is_waited_out_when_short_and_otherwise_ends_the_scan_saying_how_far(
        hostile: tuple[str, _Server], capsys: pytest.CaptureFixture[str]) -> None:
    url, state = hostile
    queue = _queue(2_000, lambda i: "mine" if i in (3, 1_500) else "other")
    refused = {"n": 0}

    def short(path: str) -> Answer:
        if "cursor=500" in path and refused["n"] == 0:
            refused["n"] += 1
            return _json({"message": "rate limit"}, 429, {"Retry-After": "0.3"})
        return queue(path)
    state.answer = short
    status, out, err, _ = _run(url, "list", "--all", "--format", "ids", capsys=capsys)
    assert status == 0 and len(out.split()) == 2_000 and refused["n"] == 1, err

    def long(path: str) -> Answer:
        if "cursor=1000" in path:
            return _json({"message": "rate limit of the api"}, 429, {"Retry-After": "40"})
        return queue(path)
    state.answer = long
    status, out, err, _ = _run(url, "list", "--all", "--format", "ids", capsys=capsys)
    assert status == 2 and len(out.split()) == 1_000  # what it found, then why it stopped
    assert "stopped after 2 page(s), 1,000 paused events scanned: the gateway answered 429" in err
    assert "Retry-After: 40 s" in err
