"""IP addresses as text: every way a host can be spelled, decoded into the address it reaches.

Shared by the webhook address filter (:mod:`models.webhooks`) and the built-in pattern rule
that looks for cloud metadata endpoints in payloads (:mod:`models.guardrails.pattern_builtin`).
Pure: no DNS, no sockets.

A resolver (glibc's ``inet_aton``, which ``getaddrinfo`` and so ``curl``, ``wget`` and most
HTTP clients use for a numeric host) accepts more IPv4 spellings than dotted decimal: one to
four parts, each decimal, octal (a leading ``0``) or hex (``0x``); the last part fills the bytes
left (``169.254.43518`` is ``169.254.169.254``, ``2852039166`` too). :func:`parse_ipv4` decodes
all of them; :func:`parse_host` also reads IPv6 (bracketed or not, with a zone), and
:func:`embedded_ipv4` finds the IPv4 address an IPv6 one can steer traffic to.

>>> str(parse_ipv4("0251.0376.0251.0376")), str(parse_ipv4("0xa9.254.0251.254"))
('169.254.169.254', '169.254.169.254')
>>> str(parse_ipv4("169.254.43518")), str(parse_ipv4("0xA9FEA9FE")), parse_ipv4("1.2.3.4.5")
('169.254.169.254', '169.254.169.254', None)
>>> is_metadata(parse_host("[::ffff:a9fe:a9fe]")), is_link_local(parse_host("169.254.1.1"))
(True, True)
>>> is_metadata(parse_host("[fd00:ec2::254%25eth0]")), parse_host("example.com")
(True, None)
"""

from __future__ import annotations

import ipaddress
from string import hexdigits

__all__ = [
    "METADATA_ADDRESSES",
    "embedded_ipv4",
    "is_link_local",
    "is_metadata",
    "parse_host",
    "parse_ipv4",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud instance-metadata and credential endpoints reached over a link-local or internal
#: address: AWS/Azure/GCP/Oracle/OpenStack IMDS, AWS ECS task credentials (169.254.170.2), EKS
#: pod identity (169.254.170.23), the EC2 IMDS over IPv6 (and its EKS pod identity twin),
#: Alibaba Cloud.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23",
    "100.100.100.200"))

_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Network
#: IPv6 forms that carry an IPv4 address in their low 32 bits (RFC 4291, 2765, 6052).
_LOW32_FORMS = (_V6("::ffff:0:0/96"),        # IPv4-mapped
                _V6("::ffff:0:0:0/96"),      # IPv4-translated (SIIT)
                _V6("::/96"),                # IPv4-compatible (deprecated)
                _V6("64:ff9b::/96"))         # NAT64 well-known prefix
_OCTAL = frozenset("01234567")
_HEX = frozenset(hexdigits)
_DECIMAL = frozenset("0123456789")
#: Longest part read (a 32-bit number is at most 11 octal digits with a few leading zeros).
_MAX_PART = 40


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address can steer traffic to: IPv4-mapped (``::ffff:a.b.c.d``),
    IPv4-translated (``::ffff:0:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), NAT64 (well-known
    ``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo (``2001::/32``: server and client)."""
    found: list[ipaddress.IPv4Address] = []
    if any(ip in net for net in _LOW32_FORMS) and int(ip) > 1:  # not :: or ::1 themselves
        found.append(_V4(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _part(text: str) -> int | None:
    """One part of an ``inet_aton`` address: decimal, octal (leading 0) or hex (0x)."""
    if not text or len(text) > _MAX_PART:
        return None
    if text[:2] in ("0x", "0X"):
        digits = text[2:]
        return int(digits, 16) if digits and _HEX.issuperset(digits) else None
    if text[0] == "0":
        return int(text, 8) if _OCTAL.issuperset(text) else None
    return int(text) if _DECIMAL.issuperset(text) else None


def parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address ``text`` names as ``inet_aton`` reads it (1-4 parts of decimal, octal
    or hex; the last part fills the remaining bytes), or None."""
    parts = text.split(".")
    if len(parts) > 4:
        return None
    values = [_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    head, last = nums[:-1], nums[-1]
    if any(v > 0xFF for v in head) or last >= 1 << (8 * (4 - len(head))):
        return None
    value = last
    for i, v in enumerate(head):
        value |= v << (8 * (3 - i))
    return _V4(value)


def parse_host(text: str) -> IPAddress | None:
    """The address a URL host (or an address written alone) names: ``[v6]`` or ``v6`` with an
    optional zone (``%eth0``, ``%25eth0``), or any :func:`parse_ipv4` spelling (a trailing dot
    allowed); None for a name."""
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4(host.removesuffix("."))


def _and_embedded(ip: IPAddress) -> list[IPAddress]:
    found: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        found.extend(embedded_ipv4(ip))
    return found


def is_metadata(ip: IPAddress | None) -> bool:
    """Is ``ip`` (or the IPv4 address it embeds) a cloud metadata endpoint?"""
    return ip is not None and any(a in METADATA_ADDRESSES for a in _and_embedded(ip))


def is_link_local(ip: IPAddress | None) -> bool:
    """Is ``ip`` (or the IPv4 address it embeds) link-local (169.254/16, fe80::/10) or a cloud
    metadata endpoint?"""
    return ip is not None and any(a.is_link_local or a in METADATA_ADDRESSES
                                  for a in _and_embedded(ip))
