"""Outbound connections for webhooks that cannot be steered at internal addresses (SSRF).

The rule (:func:`models.webhooks.address_problem`) is applied twice:

1. at registration, to every address the URL's host resolves to (:func:`check_destination`);
2. at EVERY connection, inside the resolver the HTTP client uses (:class:`GuardedResolver`):
   the name is resolved once, every answer is checked, and the connector connects to exactly
   the addresses that were checked — so a DNS answer that changes between the check and the
   connection (rebinding) cannot slip through. The DNS cache is off, so each connection
   resolves and checks again. IP-literal URLs skip resolution in aiohttp; the dispatcher checks
   them itself before each attempt. Redirects are never followed.
"""

from __future__ import annotations

import socket

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from models.errors import ValidationError
from models.webhooks import address_phrase, address_problem

__all__ = ["BlockedAddressError", "GuardedResolver", "check_destination", "guarded_session"]


class BlockedAddressError(OSError):
    """The destination resolved to an address webhooks may not reach (an ``OSError`` so the
    HTTP client reports it as a connection failure; nothing is sent)."""


class GuardedResolver(AbstractResolver):
    """Wraps a resolver; refuses a host if ANY of its addresses is not allowed."""

    def __init__(self, allow_loopback: bool, inner: AbstractResolver | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        for r in results:
            problem = address_problem(r["host"], allow_loopback=self.allow_loopback)
            if problem is not None:
                raise BlockedAddressError(
                    f"webhook host {host} resolves to {address_phrase(problem)}; refused"
                )
        return results

    async def close(self) -> None:
        await self.inner.close()


async def check_destination(resolver: AbstractResolver, host: str, port: int) -> None:
    """Registration-time check: :class:`ValidationError` (field ``url``) unless ``host``
    resolves and every address is allowed (``resolver`` is normally a GuardedResolver)."""
    try:
        await resolver.resolve(host, port, socket.AF_UNSPEC)
    except BlockedAddressError as exc:
        raise ValidationError(f"url: {exc}; webhooks must reach a public address",
                              "url") from None
    except OSError as exc:
        raise ValidationError(f"url host {host} does not resolve ({type(exc).__name__})",
                              "url") from None


def guarded_session(resolver: GuardedResolver, timeout_s: float, limit: int) -> ClientSession:
    """An HTTP client session whose every connection goes through ``resolver``."""
    connector = TCPConnector(resolver=resolver, use_dns_cache=False, limit=limit,
                             family=socket.AF_UNSPEC)
    return ClientSession(connector=connector, timeout=ClientTimeout(total=timeout_s),
                         auto_decompress=False, trust_env=False)
