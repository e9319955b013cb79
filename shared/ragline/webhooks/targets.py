"""Which URLs a webhook may be delivered to: the guard against server-side request forgery.

An endpoint URL is checked when it is registered and again before every attempt: its host is resolved
(through a ``Resolver``, so tests and callers choose how) and refused if ANY of its addresses is one a
tenant must not reach from our network. The sender then connects to the address checked here, never to a
second resolution of the name, so a DNS answer that changes in between cannot steer it.

Pure apart from the resolver: addresses are judged with ``ipaddress`` against explicit tables (not
``ipaddress``'s own ``is_private``, whose meaning has changed between Python patch releases).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedTarget(ValueError):
    """A URL a webhook may not be sent to; ``reason`` is the human-readable why (a 400's message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Resolver(Protocol):
    def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses (IP address strings), in the order a client would try them."""
        ...


class SystemResolver:
    """The operating system's resolver (getaddrinfo), TCP answers only, duplicates dropped, order kept."""

    def resolve(self, host: str, port: int) -> list[str]:
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:  # gaierror is an OSError; an over-long IDNA label a UnicodeError
            raise RefusedTarget(f"cannot resolve host {host!r}: {exc}") from exc
        return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in answers))


@dataclass(frozen=True)
class Target:
    """A checked URL and the addresses it was judged by (the sender dials ``addresses[0]``)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Refused whatever the settings: credentials live there (AWS IMDS v4 and v6, the ECS/EKS credential
# endpoints, Alibaba's metadata), and local development never needs them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
    )
)

# (networks, what they are, refused even when private targets are allowed)
_V4_RULES: tuple[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], str, bool], ...] = (
    (_nets("0.0.0.0/8"), "an unspecified ('this network') address", True),
    (_nets("224.0.0.0/4"), "a multicast address", True),
    (_nets("255.255.255.255/32"), "the broadcast address", True),
    (_nets("127.0.0.0/8"), "a loopback address", False),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "a private (RFC 1918) address", False),
    (_nets("100.64.0.0/10"), "a carrier-grade NAT (shared) address", False),
    (_nets("169.254.0.0/16"), "a link-local address", False),
    (_nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"), "a documentation address", False),
    (_nets("198.18.0.0/15"), "a benchmarking address", False),
    (_nets("192.0.0.0/24", "192.88.99.0/24", "240.0.0.0/4"), "a reserved address", False),
)

_V6_RULES: tuple[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], str, bool], ...] = (
    (_nets("::/128"), "the unspecified address", True),
    (_nets("ff00::/8"), "a multicast address", True),
    (_nets("::1/128"), "a loopback address", False),
    (_nets("fc00::/7"), "a unique-local address", False),
    (_nets("fe80::/10", "fec0::/10"), "a link-local address", False),
    (_nets("64:ff9b:1::/48"), "a local-use NAT64 address", False),
    (_nets("2001:db8::/32", "3fff::/20"), "a documentation address", False),
    # IETF protocol assignments: Teredo tunnels, benchmarking, ORCHID; nothing a webhook is served from.
    (_nets("2001::/23"), "a reserved (IETF protocol) address", False),
)
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries (and which form), judged in its place: it is where packets go."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped, "IPv4-mapped"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address.sixtofour is not None:
        return address.sixtofour, "6to4"
    # ::a.b.c.d (deprecated "IPv4-compatible"); :: and ::1 are themselves, judged below.
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address)), "IPv4-compatible"
    return None


def _judge(address: IPAddress, allow_private: bool) -> str | None:
    """What a forbidden address is ("a loopback address"), or None when a webhook may go there."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        # Scoped addresses compare unequal to unscoped ones: judge the address itself.
        address = ipaddress.IPv6Address(str(address).partition("%")[0])
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_v4(address)
        if embedded is not None:
            v4, form = embedded
            inner = _judge(v4, allow_private)
            return None if inner is None else f"the {form} form of {v4}, {inner}"
        rules = _V6_RULES
    else:
        rules = _V4_RULES
    for networks, what, always in rules:
        if any(address in network for network in networks):
            return None if allow_private and not always else what
    if isinstance(address, ipaddress.IPv6Address) and address not in _V6_GLOBAL_UNICAST and not allow_private:
        return "a reserved address (not global unicast)"
    return None


def forbidden_reason(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to this address ("127.0.0.1 is a loopback address"), or None."""
    what = _judge(address, allow_private)
    return None if what is None else f"{address} is {what}"


# Whitespace, controls and backslashes: URL parsers disagree about them, and no real endpoint needs them.
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


def _literal(host: str) -> IPAddress | None:
    """The address an IP-literal host names, including the forms inet_aton accepts ("2130706433", "0x7f.1")."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if ":" in host:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_target(url: str, *, allow_private: bool, resolver: Resolver) -> Target:
    """The checked target of a webhook URL, or RefusedTarget saying why it may not be used.

    https only (http too when ``allow_private``, for local development), at most 2,048 characters, a host,
    no credentials in the URL, a valid port; every address the host resolves to must be allowed.
    """
    if len(url) > MAX_URL_LENGTH:
        raise RefusedTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE_CHARACTERS.search(url):
        raise RefusedTarget("the URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedTarget(f"the URL is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    allowed_schemes = ("https", "http") if allow_private else ("https",)
    if scheme not in allowed_schemes:
        raise RefusedTarget("the URL must use https" if not allow_private else "the URL must use https or http")
    if "@" in parts.netloc:
        raise RefusedTarget("the URL may not carry a user name or password")
    host = parts.hostname
    if not host:
        raise RefusedTarget("the URL has no host")
    if "%" in host:
        raise RefusedTarget("the URL's host may not carry an IPv6 zone")
    if port == 0:
        raise RefusedTarget("the URL's port must be between 1 and 65535")
    port = port or (443 if scheme == "https" else 80)

    literal = _literal(host)
    if literal is not None:
        reason = forbidden_reason(literal, allow_private=allow_private)
        if reason is not None:
            raise RefusedTarget(reason)
        return Target(url=url, scheme=scheme, host=host, port=port, addresses=(str(literal),))

    answers = resolver.resolve(host, port)
    if not answers:
        raise RefusedTarget(f"host {host!r} resolves to no address")
    addresses: list[str] = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer)
        except ValueError as exc:
            raise RefusedTarget(f"host {host!r} resolves to {answer!r}, which is not an IP address") from exc
        what = _judge(address, allow_private)
        if what is not None:
            raise RefusedTarget(f"host {host!r} resolves to {address}, {what}")
        addresses.append(str(address))
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(dict.fromkeys(addresses)))
