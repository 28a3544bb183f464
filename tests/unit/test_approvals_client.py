"""``ratchet approvals``' HTTP client without a gateway: one agent's events asked of the API
(``agent_id``) and never another's shown, and redirects (review of the command: ``--agent``
filtered only the first page; urllib followed a redirect with the admin key)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ratchet.cli.approvals import Gateway, GatewayError


class _Pages(Gateway):
    """The approvals API over a list: pages of the asked limit, cursor = next index; with
    ``agent_id``, that agent's items only (as the gateway filters)."""

    filters = True

    def __init__(self, url: str, key: str) -> None:
        super().__init__(url, key)
        self.queries: list[dict[str, list[str]]] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        q = parse_qs(urlsplit(path).query)
        self.queries.append(q)
        at, limit = int(q.get("cursor", ["0"])[0]), int(q["limit"][0])
        agent = q.get("agent_id", [None])[0]
        rows = [v for v in ITEMS if agent is None or not self.filters or v["agent_id"] == agent]
        items = rows[at:at + limit]
        nxt = at + limit if at + limit < len(rows) else None
        return {"items": items, "next_cursor": None if nxt is None else str(nxt)}


class _Unfiltered(_Pages):
    """A gateway that ignores ``agent_id`` (an older release)."""

    filters = False


ITEMS = [{"event_id": f"e{i}", "agent_id": "a2" if i < 700 else "a1"} for i in range(720)]


def test_one_agents_events_are_asked_of_the_api() -> None:
    gw = _Pages("http://gw", "k")
    got = gw.paused(5, False, "a1")
    assert [v["event_id"] for v in got.items] == [f"e{i}" for i in range(700, 705)]
    assert got.more and got.pages == 1 and not got.stopped
    assert gw.queries[-1]["agent_id"] == ["a1"] and gw.queries[-1]["limit"] == ["5"]
    every = gw.paused(5, True, "a1")
    assert len(every.items) == 20 and not every.more and every.scanned == 20
    first = gw.paused(3, False)
    assert [v["event_id"] for v in first.items] == ["e0", "e1", "e2"] and first.more
    assert "agent_id" not in gw.queries[-1]
    none = gw.paused(5, False, "nobody")
    assert none.items == [] and not none.more and not none.stopped and none.pages == 1
    assert [q["limit"] for q in gw.queries[-1:]] == [["5"]]  # a filtering gateway: as asked


def test_a_gateway_that_ignores_the_filter_never_shows_another_agents_events() -> None:
    gw = _Unfiltered("http://gw", "k")
    got = gw.paused(5, False, "a1")  # five as asked; a2's answered: then pages of 500
    assert [v["event_id"] for v in got.items] == [f"e{i}" for i in range(700, 705)]
    assert got.more and not got.failed and got.pages == 3
    assert [q["limit"] for q in gw.queries[-3:]] == [["5"], ["500"], ["500"]]
    capped = gw.paused(5, False, "nobody", max_pages=2)
    assert capped.items == [] and capped.more and not capped.failed
    assert capped.stopped == ("stopped after 2 page(s), 505 paused events scanned "
                              "(--max-pages); more may wait")


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path + " " + str(self.headers.get("Authorization")))
            if self.path.startswith("/elsewhere"):
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b'{"items": [], "next_cursor": null}')
                return
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_not_followed_with_the_admin_key(
        redirecting: tuple[str, list[str]]) -> None:
    url, hits = redirecting
    with pytest.raises(GatewayError, match="302 .*not followed with the admin key"):
        Gateway(url, "rk_secret").call("GET", "/v1/approvals?limit=1")
    assert len(hits) == 1 and not hits[0].startswith("/elsewhere")
