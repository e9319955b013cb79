"""The SSRF guard on webhook URLs (ragline.webhooks.targets): every refused range, as a table."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from ragline.webhooks.targets import (
    MAX_URL_LENGTH,
    RefusedTarget,
    SystemResolver,
    Target,
    check_target,
)


class FakeResolver:
    """Answers from a table and records what it was asked; a name it does not know fails like DNS."""

    def __init__(self, answers: dict[str, list[str]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, int]] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise RefusedTarget(f"cannot resolve host {host!r}")
        return list(self.answers[host])


def check(url: str, *, allow_private: bool = False, answers: dict[str, list[str]] | None = None) -> Target:
    return check_target(url, allow_private=allow_private, resolver=FakeResolver(answers))


def url_for(address: str) -> str:
    return f"https://[{address}]/hook" if ":" in address else f"https://{address}/hook"


# (address, what the reason says) — refused unless private targets are allowed.
PRIVATE = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("169.254.0.1", "link-local"),
    ("169.254.169.253", "link-local"),
    ("192.0.0.8", "reserved"),
    ("192.0.2.10", "documentation"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.200", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.1", "benchmarking"),
    ("240.0.0.1", "reserved"),
    ("254.1.2.3", "reserved"),
    ("::1", "loopback"),
    ("fc00::1", "unique-local"),
    ("fd12:3456:789a::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "link-local"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001::1", "reserved"),  # Teredo
    ("2001:2::1", "reserved"),  # benchmarking
    ("64:ff9b:1::1", "NAT64"),
    ("100::1", "reserved"),  # discard-only
    ("4000::1", "reserved"),  # outside global unicast 2000::/3
    # IPv6 forms that carry an IPv4 address are judged by that address.
    ("::ffff:127.0.0.1", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("::ffff:7f00:1", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("::ffff:10.1.2.3", "IPv4-mapped form of 10.1.2.3, a private"),
    ("::ffff:192.168.0.1", "IPv4-mapped form of 192.168.0.1, a private"),
    ("::ffff:100.64.0.1", "carrier-grade NAT"),
    ("::ffff:169.254.1.1", "link-local"),
    ("::127.0.0.1", "IPv4-compatible form of 127.0.0.1, a loopback"),
    ("::10.0.0.1", "IPv4-compatible form of 10.0.0.1"),
    ("64:ff9b::127.0.0.1", "NAT64 form of 127.0.0.1, a loopback"),
    ("64:ff9b::a00:1", "NAT64 form of 10.0.0.1"),
    ("2002:7f00:1::", "6to4 form of 127.0.0.1, a loopback"),
    ("2002:c0a8:101::1", "6to4 form of 192.168.1.1"),
]

# Refused whatever RAGLINE_WEBHOOKS_ALLOW_PRIVATE_TARGETS says.
ALWAYS = [
    ("169.254.169.254", "cloud metadata"),
    ("169.254.170.2", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of 169.254.169.254, a cloud metadata"),
    ("::ffff:a9fe:a9fe", "cloud metadata"),
    ("64:ff9b::169.254.169.254", "NAT64 form of 169.254.169.254, a cloud metadata"),
    ("2002:a9fe:a9fe::", "6to4 form of 169.254.169.254, a cloud metadata"),
    ("::169.254.169.254", "cloud metadata"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("::ffff:224.0.0.251", "multicast"),
    ("255.255.255.255", "broadcast"),
]

PUBLIC = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.1",  # just above it
    "192.169.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # mapped forms of public addresses reach public addresses
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address, what", PRIVATE + ALWAYS)
def test_refused_ranges_as_ip_literals(address: str, what: str) -> None:
    with pytest.raises(RefusedTarget) as refused:
        check(url_for(address))
    assert what in refused.value.reason
    assert str(refused.value) == refused.value.reason


@pytest.mark.parametrize("address, what", PRIVATE + ALWAYS)
def test_refused_ranges_behind_a_name(address: str, what: str) -> None:
    with pytest.raises(RefusedTarget) as refused:
        check("https://hooks.example.com/in", answers={"hooks.example.com": [address]})
    assert refused.value.reason.startswith("host 'hooks.example.com' resolves to ")
    assert what in refused.value.reason


@pytest.mark.parametrize("address, _what", PRIVATE)
def test_private_ranges_are_allowed_for_local_development(address: str, _what: str) -> None:
    target = check(url_for(address).replace("https:", "http:"), allow_private=True)
    assert target.scheme == "http"
    assert target.port == 80


@pytest.mark.parametrize("address, what", ALWAYS)
def test_metadata_multicast_and_unspecified_stay_refused_when_private_targets_are_allowed(
    address: str, what: str
) -> None:
    with pytest.raises(RefusedTarget, match=what):
        check(url_for(address), allow_private=True)
    with pytest.raises(RefusedTarget, match=what):
        check("http://metadata.internal/", allow_private=True, answers={"metadata.internal": [address]})


@pytest.mark.parametrize("address", PUBLIC)
@pytest.mark.parametrize("allow_private", [False, True])
def test_public_addresses_are_allowed(address: str, allow_private: bool) -> None:
    target = check(url_for(address), allow_private=allow_private)
    assert target.port == 443
    assert len(target.addresses) == 1
    named = check("https://hooks.example.com/in", allow_private=allow_private, answers={"hooks.example.com": [address]})
    assert named.addresses == (str(ipaddress.ip_address(address)),)


@pytest.mark.parametrize(
    "host, address",
    [
        ("2130706433", "127.0.0.1"),  # decimal
        ("0x7f000001", "127.0.0.1"),  # hexadecimal
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),  # octal
        ("0177.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0", "0.0.0.0"),
    ],
)
def test_odd_ipv4_literal_forms_are_judged_by_the_address_they_name(host: str, address: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(RefusedTarget, match=address.replace(".", r"\.")):
        check_target(f"https://{host}/hook", allow_private=False, resolver=resolver)
    assert resolver.asked == []  # a literal is judged as is, never sent to DNS


def test_an_odd_literal_of_a_public_address_is_allowed_and_dialled_as_that_address() -> None:
    target = check("https://134744072/hook")  # 8.8.8.8
    assert target.addresses == ("8.8.8.8",)
    assert target.host == "134744072"


def test_a_name_resolving_to_a_private_address_is_refused_through_the_resolver_seam() -> None:
    resolver = FakeResolver({"internal.example.com": ["10.20.30.40"]})
    with pytest.raises(RefusedTarget) as refused:
        check_target("https://internal.example.com:8443/x", allow_private=False, resolver=resolver)
    assert refused.value.reason == ("host 'internal.example.com' resolves to 10.20.30.40, a private (RFC 1918) address")
    assert resolver.asked == [("internal.example.com", 8443)]


@pytest.mark.parametrize(
    "answers",
    [
        ["93.184.215.14", "10.0.0.5"],
        ["10.0.0.5", "93.184.215.14"],
        ["2606:4700::1", "::1"],
        ["93.184.215.14", "::ffff:127.0.0.1"],
    ],
)
def test_one_forbidden_answer_among_public_ones_refuses_the_name(answers: list[str]) -> None:
    with pytest.raises(RefusedTarget, match="resolves to"):
        check("https://mixed.example.com/", answers={"mixed.example.com": answers})
    assert check("https://mixed.example.com/", allow_private=True, answers={"mixed.example.com": answers}).addresses


def test_a_checked_target_keeps_every_address_in_order() -> None:
    target = check(
        "https://Hooks.Example.com:8443/in?x=1",
        answers={"hooks.example.com": ["93.184.215.14", "2606:4700::1", "93.184.215.14"]},
    )
    assert target == Target(
        url="https://Hooks.Example.com:8443/in?x=1",
        scheme="https",
        host="hooks.example.com",
        port=8443,
        addresses=("93.184.215.14", "2606:4700::1"),
    )


@pytest.mark.parametrize(
    "url, allow_private, reason",
    [
        ("http://hooks.example.com/", False, "must use https"),
        ("ftp://hooks.example.com/", False, "must use https"),
        ("ftp://hooks.example.com/", True, "must use https or http"),
        ("file:///etc/passwd", True, "must use https or http"),
        ("gopher://hooks.example.com/", False, "must use https"),
        ("hooks.example.com/path", False, "must use https"),
        ("https:///path", False, "no host"),
        ("https://", False, "no host"),
        ("https://user:pass@hooks.example.com/", False, "user name or password"),
        ("https://user@hooks.example.com/", False, "user name or password"),
        ("https://:@hooks.example.com/", False, "user name or password"),
        ("https://hooks.example.com@127.0.0.1/", False, "user name or password"),
        ("https://hooks.example.com:99999/", False, "malformed"),
        ("https://hooks.example.com:0/", False, "port must be between"),
        ("https://hooks.example.com:abc/", False, "malformed"),
        ("https://[not-an-address]/", False, "malformed"),
        ("https://[fe80::1%25eth0]/", True, "zone"),
        ("https://hooks.example.com/a b", False, "whitespace"),
        ("https://hooks.example.com\\@127.0.0.1/", False, "backslash"),
        ("https://hooks.example.com/\r\nX-Injected: 1", False, "control characters"),
        ("https://hooks.example.com/" + "a" * (MAX_URL_LENGTH - 25), False, "longer than 2048"),
        ("https://unknown.example.com/", False, "cannot resolve host"),
        ("https://empty.example.com/", False, "resolves to no address"),
    ],
)
def test_malformed_or_disallowed_urls_are_refused(url: str, allow_private: bool, reason: str) -> None:
    with pytest.raises(RefusedTarget, match=reason):
        check(url, allow_private=allow_private, answers={"empty.example.com": []})


def test_a_url_of_exactly_the_maximum_length_is_allowed() -> None:
    prefix = "https://hooks.example.com/"
    url = prefix + "a" * (MAX_URL_LENGTH - len(prefix))
    assert len(url) == MAX_URL_LENGTH
    assert check(url, answers={"hooks.example.com": ["93.184.215.14"]}).url == url


def test_an_upper_case_scheme_is_accepted() -> None:
    assert check("HTTPS://hooks.example.com/", answers={"hooks.example.com": ["1.1.1.1"]}).scheme == "https"


def test_refused_target_is_a_value_error_with_a_reason() -> None:
    refused = RefusedTarget("because")
    assert isinstance(refused, ValueError)
    assert refused.reason == "because"


def test_the_system_resolver_answers_localhost_and_dedups(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "127.0.0.1" in SystemResolver().resolve("localhost", 443)

    def fake_getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert SystemResolver().resolve("anything", 443) == ["10.0.0.1", "::1"]


def test_the_system_resolver_refuses_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args: object, **kwargs: object) -> list[tuple[object, ...]]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", failing)
    with pytest.raises(RefusedTarget, match="cannot resolve host 'nowhere.invalid'"):
        SystemResolver().resolve("nowhere.invalid", 443)


def test_the_system_resolver_refuses_an_unencodable_name() -> None:
    with pytest.raises(RefusedTarget, match="cannot resolve host"):
        SystemResolver().resolve("a" * 64 + ".example.com", 443)  # a DNS label is at most 63 octets
