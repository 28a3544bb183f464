"""IP addresses as text (models/addresses.py): every inet_aton spelling decodes to the address
it reaches, and the metadata / link-local tests see through IPv6 forms that embed IPv4."""

from __future__ import annotations

import ipaddress

import pytest

from models.addresses import is_link_local, is_metadata, parse_host, parse_ipv4

IMDS = ipaddress.IPv4Address("169.254.169.254")


@pytest.mark.parametrize("text", [
    "169.254.169.254", "0251.0376.0251.0376", "0xa9.0xfe.0xa9.0xfe", "0xa9.254.0251.254",
    "169.254.43518", "169.0xfea9fe", "169.16689662", "2852039166", "0xa9fea9fe", "0XA9FEA9FE",
    "025177524776", "00000251.254.169.254",
])
def test_every_ipv4_spelling_decodes_to_the_address(text: str) -> None:
    assert parse_ipv4(text) == IMDS


@pytest.mark.parametrize("text", [
    "1.2.3.4.5", "256.1.1.1", "169.254.65536", "169.16777216", "4294967296", "08.1.1.1",
    "0xg1.1.1.1", "169..254.1", "", "nip", "1.2.3.4a", "0x",
])
def test_what_is_not_an_ipv4_address(text: str) -> None:
    assert parse_ipv4(text) is None


@pytest.mark.parametrize("host", [
    "[::ffff:a9fe:a9fe]", "[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe",
    "[0:0:0:0:0:ffff:a9fe:a9fe]", "[::a9fe:a9fe]", "[::ffff:0:a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]",
    "[fd00:ec2::254]", "[fd00:ec2::254%25eth0]", "fd00:ec2::254%eth0", "169.254.169.254.",
    "169.254.170.2", "100.100.100.200", "[::ffff:6464:64c8]",
])
def test_metadata_endpoints_in_every_form(host: str) -> None:
    assert is_metadata(parse_host(host)), host


@pytest.mark.parametrize("host", ["169.254.1.1", "[fe80::1]", "[::ffff:169.254.0.1]",
                                  "0xa9fe0101"])
def test_link_local_but_not_metadata(host: str) -> None:
    ip = parse_host(host)
    assert is_link_local(ip) and not is_metadata(ip)


@pytest.mark.parametrize("host", ["10.0.0.1", "1.2.3.4", "100.64.0.1", "[2001:db8::1]",
                                  "[::1]", "[::]", "example.com", "169.255.1.1", "[::2]"])
def test_other_addresses_and_names(host: str) -> None:
    ip = parse_host(host)
    assert not is_link_local(ip) and not is_metadata(ip)
