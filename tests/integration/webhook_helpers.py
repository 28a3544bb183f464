"""Test helpers for webhooks: a real HTTP receiver on loopback and scripted DNS resolvers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ratchet.sandbox.servers import free_port

__all__ = ["Received", "Receiver", "ScriptedResolver"]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An aiohttp server on 127.0.0.1 that records every request and answers the scripted
    statuses in turn (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)
    #: Seconds each request is held before its answer (a slow receiver).
    delay_s: float = 0.0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.read()))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        index = min(len(self.requests), len(self.statuses)) - 1
        return web.Response(status=self.statuses[index], text="ok")

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ScriptedResolver(AbstractResolver):
    """Answers the scripted addresses in turn (the last one repeats), whatever the name."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": fam, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None
