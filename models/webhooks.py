"""Webhooks for verdicts: request validation, address rules, retry delays, delivery bodies.
Pure: no I/O, no clock reads, no DNS (resolution happens in :mod:`ratchet.webhooks.net`).

>>> address_problem("10.1.2.3", allow_loopback=False)
'private'
>>> address_problem("169.254.169.254", allow_loopback=False)
'cloud metadata'
>>> address_problem("::ffff:127.0.0.1", allow_loopback=False)
'loopback'
>>> address_problem("64:ff9b::7f00:1", allow_loopback=False)  # NAT64 of 127.0.0.1
'loopback'
>>> embedded_ipv4(ipaddress.ip_address("2002:5db8:d822::1"))
[IPv4Address('93.184.216.34')]
>>> address_problem("127.0.0.1", allow_loopback=True) is None
True
>>> address_problem("93.184.216.34", allow_loopback=False) is None
True
>>> backoff_delay(3, base_s=1.0, cap_s=60.0, rand=1.0)
4.0
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from models.addresses import METADATA_ADDRESSES, embedded_ipv4
from models.errors import ValidationError
from models.known_fields import refuse_unknown_fields

__all__ = [
    "WEBHOOK_ACTIONS",
    "WebhookSpec",
    "address_phrase",
    "address_problem",
    "backoff_delay",
    "delivery_body",
    "delivery_id",
    "destination_of",
    "embedded_ipv4",
    "parse_webhook_request",
]

#: Verdict actions a webhook can subscribe to (``allow`` is never delivered).
WEBHOOK_ACTIONS: tuple[str, ...] = ("flag", "pause", "reject")

_MAX_URL = 2048
_MAX_DESCRIPTION = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMESPACE = uuid.UUID("6f1c3f4e-8a47-4d7c-9a52-2d3e6e0b8f11")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Network
#: Ranges a webhook never reaches even if Python's ``is_global`` (3.11) calls them global:
#: NAT64 local-use (RFC 8215), IPv4-compatible, site-local, documentation (RFC 9637),
#: SRv6 SIDs (RFC 9602), the 6to4 relay anycast (RFC 7526), and the IETF protocol block.
_RESERVED: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    _V6("64:ff9b:1::/48"), _V6("::/96"), _V6("fec0::/10"), _V6("3fff::/20"), _V6("5f00::/16"),
    _V6("2001:db8::/32"), _V6("2001::/23"), _V6("100::/64"),
    ipaddress.IPv4Network("192.88.99.0/24"), ipaddress.IPv4Network("192.0.0.0/24"),
)


@dataclass(frozen=True, slots=True)
class WebhookSpec:
    url: str
    host: str
    actions: tuple[str, ...]
    description: str


def address_phrase(problem: str) -> str:
    """:func:`address_problem`'s answer as words after "points at" / "resolves to".

    >>> address_phrase("unspecified"), address_phrase("private"), address_phrase("not an IP address")
    ('an unspecified address', 'a private address', 'something that is not an IP address')
    """
    if problem == "not an IP address":
        return "something that is not an IP address"
    return ("an " if problem[:1] in "aeiou" else "a ") + problem + " address"


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why a webhook may not connect to ``address`` (an IP literal), or ``None`` if it may.

    Refused: cloud metadata, loopback (unless ``allow_loopback``, for development), private,
    link-local, CGNAT (100.64/10), multicast, unspecified, reserved and every other
    non-global range. An IPv6 address that embeds an IPv4 address (:func:`embedded_ipv4`) is
    judged by that IPv4 address first — Python's ``is_global`` calls ``64:ff9b::7f00:1`` global
    — and then by its own range (NAT64 local-use and IPv4-compatible are reserved outright).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        for inner in embedded_ipv4(ip):
            problem = address_problem(str(inner), allow_loopback=allow_loopback)
            if problem is not None:
                return problem
        if ip.ipv4_mapped is not None:
            return None  # judged above as the IPv4 address it is
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_loopback:
        return None if allow_loopback else "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT"
    if any(ip in net for net in _RESERVED if net.version == ip.version):
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


def _text(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len or _CONTROL.search(value):
        raise ValidationError(f"{field} must be a string of at most {max_len} characters "
                              "without control characters", field)
    return value


def _check_url(url: str, allow_loopback: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise ValidationError("url must start with https:// (or http://)", "url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError("url must not contain credentials (user:password@)", "url")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("url has an invalid port", "url") from None
    if port == 0:
        raise ValidationError("url has an invalid port", "url")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise ValidationError("url must name a host", "url")
    if (host == "localhost" or host.endswith(".localhost")) and not allow_loopback:
        raise ValidationError("url points at a loopback address (localhost); webhooks "
                              "must reach a public address", "url")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    problem = address_problem(host, allow_loopback=allow_loopback)
    if problem is not None:
        raise ValidationError(f"url points at {address_phrase(problem)}; webhooks must reach "
                              "a public address", "url")
    return host


def parse_webhook_request(body: Any, *, allow_loopback: bool) -> WebhookSpec:
    """Validate ``{"url", "actions"?, "description"?}`` (address literals checked here; names
    are resolved and checked by the caller, and again at every connection)."""
    if not isinstance(body, Mapping):
        raise ValidationError('body must be a JSON object {"url": ...}', None)
    refuse_unknown_fields(body, ("url", "actions", "description"))
    url = _text(body.get("url"), "url", _MAX_URL)
    host = _check_url(url, allow_loopback)
    raw_actions = body.get("actions", list(WEBHOOK_ACTIONS))
    if (not isinstance(raw_actions, list) or not raw_actions
            or any(a not in WEBHOOK_ACTIONS for a in raw_actions)):
        raise ValidationError(f"actions must be a non-empty list of {list(WEBHOOK_ACTIONS)}",
                              "actions")
    if len(set(raw_actions)) != len(raw_actions):
        raise ValidationError("actions must list each action once", "actions")
    actions = tuple(a for a in WEBHOOK_ACTIONS if a in raw_actions)
    description = _text(body.get("description", ""), "description", _MAX_DESCRIPTION)
    return WebhookSpec(url, host, actions, description)


def destination_of(url: str) -> str:
    """The breaker key of a URL: ``scheme://host:port`` (one breaker per destination)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def delivery_id(webhook_id: str, event_id: str) -> str:
    """Stable id of delivering one event to one webhook: every retry, and a redelivery after a
    dispatcher restart, carries the same id, so receivers can deduplicate."""
    return str(uuid.uuid5(_NAMESPACE, f"{webhook_id}\n{event_id}"))


def delivery_body(
    webhook_id: str, project_id: str, delivery: str, verdict: Mapping[str, Any]
) -> dict[str, Any]:
    return {"type": f"verdict.{verdict.get('action')}", "delivery_id": delivery,
            "webhook_id": webhook_id, "project_id": project_id, "verdict": dict(verdict)}


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rand: float) -> float:
    """Delay before retry ``attempt`` (1 = first retry): full jitter over
    ``min(cap, base × 2^(attempt-1))``; ``rand`` is a uniform number in [0, 1]."""
    ceiling = min(float(cap_s), float(base_s) * 2.0 ** max(0, attempt - 1))
    return ceiling * max(0.0, min(1.0, float(rand)))
