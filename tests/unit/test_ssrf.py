"""The SSRF rules for webhook targets: which addresses and URL hosts may be sent to."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from modelreg.ssrf import Reach, peer_refusal, reach, url_refusal

ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
addresses = st.one_of(ipv4, ipv6)
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


def _mapped(address: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(f"::ffff:{address}")


@given(st.sampled_from(LINK_LOCAL).flatmap(lambda net: st.ip_addresses(network=net)))
def test_link_local_is_forbidden_even_when_private_targets_are_allowed(address: object) -> None:
    assert isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert reach(address) is Reach.FORBIDDEN
    assert "never contacted" in peer_refusal(str(address), allow_private=True)


@given(ipv4)
def test_an_ipv4_address_in_ipv6_clothing_is_judged_as_itself(
    address: ipaddress.IPv4Address,
) -> None:
    # ::ffff:a.b.c.d (mapped) and 64:ff9b::a.b.c.d (NAT64) both reach a.b.c.d.
    nat64 = ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | int(address))
    assert reach(_mapped(address)) is reach(address)
    assert reach(nat64) is reach(address)


@given(addresses)
def test_without_the_opt_in_only_globally_routable_addresses_are_contacted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if not peer_refusal(str(address), allow_private=False):
        assert reach(address) is Reach.PUBLIC
        assert not (address.is_private or address.is_loopback or address.is_link_local)


@given(addresses)
def test_allowing_private_targets_never_refuses_more(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    if not peer_refusal(str(address), allow_private=False):
        assert not peer_refusal(str(address), allow_private=True)


@given(addresses)
def test_loopback_and_private_ranges_need_the_opt_in(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    assume(address.is_loopback or (address.is_private and not address.is_link_local))
    assume(reach(address) is not Reach.FORBIDDEN)  # reserved and metadata stay forbidden
    assert "allow_private = true" in peer_refusal(str(address), allow_private=False)
    assert not peer_refusal(str(address), allow_private=True)


@given(ipv4)
def test_every_spelling_of_an_ipv4_host_is_judged_like_the_address(
    address: ipaddress.IPv4Address,
) -> None:
    number = int(address)
    spellings = [str(number), hex(number), str(address), f"[::ffff:{address}]"]
    # 127.1-style short forms, as inet_aton and so the system resolver read them.
    spellings.append(f"{number >> 24}.{number & 0xFFFFFF}")
    expected = peer_refusal(str(address), allow_private=False) != ""
    for spelling in spellings:
        assert spelling.startswith("[") or socket.inet_aton(spelling) == address.packed
        assert (url_refusal(spelling, allow_private=False) != "") is expected, spelling


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "[fd00:ec2::254]",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
        "metadata.google.internal",
        "METADATA.GOOGLE.INTERNAL.",
        "metadata",
        "0.0.0.0",  # noqa: S104 (a target to refuse, not an address to bind)
        "[::]",
        "[fe80::1%25eth0]",
        "224.0.0.1",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::]",
    ],
)
def test_metadata_and_link_local_hosts_are_never_allowed(host: str) -> None:
    assert "never contacted" in url_refusal(host, allow_private=True)


@pytest.mark.parametrize(
    "host",
    [
        *("127.0.0.1", "localhost", "api.localhost", "10.0.0.1", "172.16.0.1", "192.168.1.1"),
        *("[::1]", "[fd12::1]", "100.64.0.1", "2130706433", "0x7f000001", "0x7f.1", "127.1"),
    ],
)
def test_private_and_loopback_hosts_need_the_opt_in(host: str) -> None:
    assert "allow_private = true" in url_refusal(host, allow_private=False)
    assert url_refusal(host, allow_private=True) == ""


@pytest.mark.parametrize("host", ["hooks.example.com", "8.8.8.8", "[2606:4700::1111]"])
def test_public_hosts_and_names_pass_on_sight(host: str) -> None:
    # Names are judged again on the address they resolve to, at delivery.
    assert url_refusal(host, allow_private=False) == ""


def test_a_peer_that_is_not_an_address_is_refused() -> None:
    assert "not an IP address" in peer_refusal("<unknown>", allow_private=True)
