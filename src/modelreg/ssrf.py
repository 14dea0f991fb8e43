"""Where modelreg may send requests on a policy's behalf: the SSRF rules for webhook targets.

A webhook URL comes from the policy file, but the request leaves from inside
the deployment, next to cloud metadata services and internal ports. Every
address falls in one of three reaches (:class:`Reach`):

- ``forbidden``, never contacted: link-local (169.254.0.0/16, fe80::/10, which
  hold the AWS, GCP, Azure and OpenStack metadata services), known metadata
  addresses outside it (``fd00:ec2::254``, Alibaba's ``100.100.100.200``,
  Azure's wire server ``168.63.129.16``, Oracle's ``192.0.0.192``),
  unspecified, multicast and reserved addresses;
- ``private``, contacted only when the policy allows it for that webhook:
  loopback, RFC 1918 and unique-local ranges, shared address space and every
  other address that is not globally routable;
- ``public``: everything else.

An IPv6 address that carries an IPv4 one (mapped ``::ffff:a.b.c.d``, NAT64,
6to4) is judged by the IPv4 host it reaches, so ``[::ffff:169.254.169.254]``
is no way round. The rules apply twice: to literal
addresses and well-known names when the policy is loaded (:func:`url_refusal`),
and to the address actually connected to at delivery, after DNS resolution
(:func:`peer_refusal`), so a name that resolves to a metadata address is
refused too, and DNS rebinding between a check and the connection is no way
round either.
"""

from __future__ import annotations

import enum
import ipaddress
import socket

__all__ = ["Reach", "peer_refusal", "reach", "url_refusal"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Reach(enum.IntEnum):
    """How far an address is from the public internet; higher is more restricted."""

    PUBLIC = 0
    PRIVATE = 1  # allowed only when the policy says so for the webhook
    FORBIDDEN = 2  # never


_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure wire server (host agent, metadata)
        "192.0.0.192",  # Oracle Cloud metadata
    )
)
# Names that reach a metadata service by DNS inside the cloud that serves it.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a transition mechanism would deliver ``address`` to, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


def _own_reach(address: Address) -> Reach:
    if address.is_loopback:  # before "reserved": ::1 lies in the reserved ::/8
        return Reach.PRIVATE
    if (
        address in _METADATA_ADDRESSES
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        # "This network": Linux connects 0.0.0.0/8 to the host itself.
        or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)
    ):
        return Reach.FORBIDDEN
    if (
        address.is_private
        or address in _SHARED_ADDRESS_SPACE
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or not address.is_global
    ):
        return Reach.PRIVATE
    return Reach.PUBLIC


def reach(address: Address) -> Reach:
    """How restricted ``address`` is as a request target."""
    # A translation prefix (NAT64 counts as reserved, 6to4 as global) is
    # judged by the IPv4 host it delivers to, not by the prefix.
    if isinstance(address, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(address)):
        return _own_reach(embedded)
    return _own_reach(address)


def _refusal(address: Address, allow_private: bool) -> str:
    """Why ``address`` may not be contacted ('' when it may)."""
    found = reach(address)
    if found is Reach.FORBIDDEN:
        return f"{address} is a link-local, cloud-metadata or reserved address; never contacted"
    if found is Reach.PRIVATE and not allow_private:
        return (
            f"{address} is a private or loopback address; set allow_private = true on the "
            "webhook to send there"
        )
    return ""


def _literal(host: str) -> Address | None:
    """The address a host name stands for without DNS, as the system resolver reads it."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        pass
    if host and all(char in "0123456789abcdefx." for char in host):
        # inet_aton accepts what getaddrinfo does: 2130706433, 0x7f.1 and 127.1
        # are all 127.0.0.1, so they are judged as 127.0.0.1.
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def url_refusal(host: str, *, allow_private: bool) -> str:
    """Why a URL with ``host`` is refused as a target on sight ('' when it needs DNS or is fine).

    Judges literal addresses in any spelling, ``localhost`` and well-known
    metadata names; other names are judged after resolution (:func:`peer_refusal`).
    """
    name = host.strip().lower().removesuffix(".").strip("[]")
    if name in _METADATA_NAMES:
        return f"{name} is a cloud-metadata service; never contacted"
    if name == "localhost" or name.endswith(".localhost"):
        return _refusal(ipaddress.IPv4Address("127.0.0.1"), allow_private)
    address = _literal(name)
    return _refusal(address, allow_private) if address is not None else ""


def peer_refusal(peer: str, *, allow_private: bool) -> str:
    """Why a connected socket's peer address ``peer`` may not be sent to ('' when it may)."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return f"connected to {peer!r}, which is not an IP address"
    return _refusal(address, allow_private)
