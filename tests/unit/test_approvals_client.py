"""``ratchet approvals``' HTTP client without a gateway: paging by agent, and redirects
(review of the command: ``--agent`` filtered only the first page; urllib followed a redirect
with the admin key)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ratchet.cli.approvals import Gateway, GatewayError


class _Pages(Gateway):
    """The approvals API over a list: pages of the asked limit, cursor = next index."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        q = parse_qs(urlsplit(path).query)
        at, limit = int(q.get("cursor", ["0"])[0]), int(q["limit"][0])
        items = ITEMS[at:at + limit]
        nxt = at + limit if at + limit < len(ITEMS) else None
        return {"items": items, "next_cursor": None if nxt is None else str(nxt)}


ITEMS = [{"event_id": f"e{i}", "agent_id": "a2" if i < 700 else "a1"} for i in range(720)]


def test_an_agents_events_are_found_past_the_first_page() -> None:
    gw = _Pages("http://gw", "k")
    got = gw.paused(5, False, "a1")
    assert [v["event_id"] for v in got.items] == [f"e{i}" for i in range(700, 705)]
    assert got.more and got.pages == 2 and not got.stopped
    every = gw.paused(5, True, "a1")
    assert len(every.items) == 20 and not every.more and every.scanned == 720
    first = gw.paused(3, False)
    assert [v["event_id"] for v in first.items] == ["e0", "e1", "e2"] and first.more
    none = gw.paused(5, False, "nobody")
    assert none.items == [] and not none.more and not none.stopped
    capped = gw.paused(5, False, "nobody", max_pages=1)
    assert capped.items == [] and capped.more and not capped.failed
    assert capped.stopped == ("stopped after 1 page(s), 500 paused events scanned "
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
