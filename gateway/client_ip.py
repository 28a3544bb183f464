"""The client IP of a request: the socket peer, unless a trusted proxy says otherwise.

``X-Forwarded-For`` is only believed when the socket peer is one of ``RATCHET_TRUSTED_PROXIES``
(off by default): then the address is the right-most entry that is not itself a trusted proxy.
Anything left of that entry was written by the client and is ignored, so a spoofed header cannot
move a client into another per-IP budget.

>>> nets = parse_networks("10.0.0.0/8")
>>> client_ip("203.0.113.9", "1.2.3.4", ())
'203.0.113.9'
>>> client_ip("10.1.1.1", "1.2.3.4, 198.51.100.7", nets)
'198.51.100.7'
>>> client_ip("10.1.1.1", "198.51.100.7, 10.2.2.2", nets)
'198.51.100.7'

Per-address limits count IPv6 clients by their /64 (one customer's usual allocation), so walking
through a prefix's 2^64 addresses does not buy fresh budgets:

>>> limit_subject("2001:db8:1:2::5") == limit_subject("2001:db8:1:2:ffff::1")
True
>>> limit_subject("198.51.100.7")
'198.51.100.7'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from models.errors import ConfigError

__all__ = ["Network", "client_ip", "limit_subject", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``RATCHET_TRUSTED_PROXIES``: comma-separated CIDRs or addresses."""
    out: list[Network] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"RATCHET_TRUSTED_PROXIES: {part!r} is not an address or CIDR") from None
    return tuple(out)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _normal(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return None


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address a per-IP limit should count (``"unknown"`` if there is no peer)."""
    if peer is None:
        return "unknown"
    if not forwarded_for or not _trusted(peer, trusted):
        return _normal(peer) or peer
    for hop in reversed(forwarded_for.split(",")):
        address = _normal(hop)
        if address is None:
            break  # garbage from here on: trust nothing further left
        if not _trusted(address, trusted):
            return address
    return _normal(peer) or peer


def limit_subject(address: str) -> str:
    """What per-address limits count: the IPv4 address, or the /64 of an IPv6 address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
