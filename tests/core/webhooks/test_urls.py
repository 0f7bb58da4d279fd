"""Which webhook URLs and addresses are refused (server-side request forgery defence)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.errors import InvalidRequest
from services.core.settings import Settings
from services.core.webhooks.urls import (
    CLOUD_METADATA_ADDRESSES,
    IPAddress,
    Resolve,
    UrlPolicy,
    WebhookUrlRefused,
    check_url_syntax,
    check_webhook_url,
    refusal_reason,
)

ip = ipaddress.ip_address
net = ipaddress.ip_network

STRICT = UrlPolicy(allow_http=False)
DEV = UrlPolicy(allow_http=True)


def resolver(*addresses: str) -> Resolve:
    """A resolver answering ``addresses`` for every host."""

    async def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ip(a) for a in addresses]

    return resolve


# --- addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private (unique local)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.170.2", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("168.63.129.16", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
        ("100.64.0.1", "shared address space (100.64.0.0/10, CGNAT)"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address judged, not bound
        ("::", "unspecified"),
        ("0.1.2.3", "reserved ('this network')"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::7f00:1", "IPv4-compatible (deprecated)"),
        ("fec0::1", "site-local (deprecated)"),
        ("2001::1", "Teredo"),
        ("5f00::1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused_by_category(address: str, category: str) -> None:
    assert refusal_reason(ip(address), DEV) == category


@pytest.mark.parametrize(
    ("address", "category", "embedded"),
    [
        ("::ffff:127.0.0.1", "loopback", "127.0.0.1, IPv4-mapped"),
        ("::ffff:10.0.0.1", "private", "10.0.0.1, IPv4-mapped"),
        ("::ffff:169.254.169.254", "cloud metadata", "169.254.169.254, IPv4-mapped"),
        ("64:ff9b::a00:1", "private", "10.0.0.1, NAT64"),
        ("64:ff9b::7f00:1", "loopback", "127.0.0.1, NAT64"),
        ("2002:a00:1::1", "private", "10.0.0.1, 6to4"),
        ("2002:a9fe:a9fe::1", "cloud metadata", "169.254.169.254, 6to4"),
    ],
)
def test_an_embedded_ipv4_address_is_judged_as_itself(
    address: str, category: str, embedded: str
) -> None:
    assert refusal_reason(ip(address), DEV) == f"{category} (it embeds {embedded})"


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ip(address), STRICT) is None


def test_an_allow_listed_network_is_allowed() -> None:
    policy = UrlPolicy(allow_http=False, allowed_networks=(net("10.20.0.0/16"),))
    assert refusal_reason(ip("10.20.3.4"), policy) is None
    assert refusal_reason(ip("::ffff:10.20.3.4"), policy) is None  # the same host
    assert refusal_reason(ip("10.21.0.1"), policy) == "private"


@pytest.mark.parametrize("metadata", [str(n.network_address) for n in CLOUD_METADATA_ADDRESSES])
def test_cloud_metadata_is_refused_even_when_its_network_is_allow_listed(metadata: str) -> None:
    everything = UrlPolicy(allow_http=True, allowed_networks=(net("0.0.0.0/0"), net("::/0")))
    assert refusal_reason(ip(metadata), everything) == "cloud metadata"
    link_local = UrlPolicy(allow_http=True, allowed_networks=(net("169.254.0.0/16"),))
    assert refusal_reason(ip(metadata), link_local) == "cloud metadata"
    assert refusal_reason(ip("169.254.1.1"), link_local) is None


METADATA = {n.network_address for n in CLOUD_METADATA_ADDRESSES}
#: where "allowed" is stricter than Python's is_global (3.11): multicast, and the IETF protocol
#: assignments block (192.0.0.0/24) of which Python calls most addresses global
GLOBAL_BUT_REFUSED = (net("224.0.0.0/4"), net("192.0.0.0/24"))
SOME_NETWORKS = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "8.8.0.0/16",
    "224.0.0.0/4",
]


@given(
    address=st.ip_addresses(v=4),
    allowed=st.lists(st.sampled_from(SOME_NETWORKS), max_size=3, unique=True),
)
def test_ipv4_allowed_iff_global_or_allow_listed_and_never_metadata(
    address: ipaddress.IPv4Address, allowed: list[str]
) -> None:
    policy = UrlPolicy(allow_http=False, allowed_networks=tuple(net(n) for n in allowed))
    in_allowlist = any(address in n for n in policy.allowed_networks)
    public = address.is_global and not any(address in n for n in GLOBAL_BUT_REFUSED)
    expected = address not in METADATA and (public or in_allowlist)
    reason = refusal_reason(address, policy)
    assert (reason is None) == expected
    if reason is not None:
        assert reason.strip()


@given(address=st.ip_addresses(v=4))
def test_ipv4_embedded_in_ipv6_is_judged_like_the_ipv4_address(
    address: ipaddress.IPv4Address,
) -> None:
    v4 = int(address)
    forms = [
        ipaddress.IPv6Address((0xFFFF << 32) | v4),  # ::ffff:a.b.c.d
        ipaddress.IPv6Address((0x64FF9B << 96) | v4),  # 64:ff9b::a.b.c.d
        ipaddress.IPv6Address((0x2002 << 112) | (v4 << 80) | 1),  # 2002:AABB:CCDD::1
    ]
    verdict = refusal_reason(address, STRICT)
    for form in forms:
        judged = refusal_reason(form, STRICT)
        assert (judged is None) == (verdict is None)
        if verdict is not None:
            assert judged is not None and judged.startswith(verdict)


@given(address=st.ip_addresses(v=6))
def test_an_allowed_ipv6_address_is_global(address: ipaddress.IPv6Address) -> None:
    if refusal_reason(address, STRICT) is None:
        assert address.is_global and not address.is_multicast


# --- URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example/x", "must use https (plain http is allowed in dev mode only)"),
        ("ftp://hooks.example/x", "must be an https URL"),
        ("hooks.example/x", "must be an https URL"),
        ("https:///x", "has no host name"),
        ("https://user:pw@hooks.example/x", "must not carry credentials"),
        ("https://user@hooks.example/x", "must not carry credentials"),
        ("https://hooks.example/x#frag", "must not have a fragment"),
        ("https://hooks.example/x#", "must not have a fragment"),
        ("https://hooks.example:0/x", "port must be between 1 and 65535"),
        ("https://hooks.example:70000/x", "port must be between 1 and 65535"),
        ("https://hooks .example/x", "is not a valid host name"),
        ("https://2130706433/x", "neither a host name nor a dotted-decimal IPv4 address"),
        ("https://0x7f000001/x", "neither a host name nor a dotted-decimal IPv4 address"),
        ("https://127.1/x", "neither a host name nor a dotted-decimal IPv4 address"),
        ("https://127.0.0.1/x", "127.0.0.1 is a loopback address"),
        ("https://[::1]/x", "::1 is a loopback address"),
        ("https://169.254.169.254/latest/meta-data", "a cloud metadata address"),
    ],
)
def test_syntax_refusals_name_the_field_and_the_reason(url: str, message: str) -> None:
    with pytest.raises(WebhookUrlRefused) as e:
        check_url_syntax(url, STRICT)
    assert e.value.detail.startswith("webhook.url ")
    assert message in e.value.detail


def test_plain_http_is_accepted_where_the_policy_allows_it() -> None:
    assert check_url_syntax("http://hooks.example:8080/x?a=1", DEV).host == "hooks.example"
    assert check_url_syntax("https://hooks.example/x", STRICT).port is None


def test_the_error_is_a_422_invalid_request() -> None:
    assert issubclass(WebhookUrlRefused, InvalidRequest)
    assert issubclass(WebhookUrlRefused, ValueError)
    assert (WebhookUrlRefused.code, WebhookUrlRefused.status) == ("webhook_url_refused", 422)


def test_the_policy_comes_from_settings() -> None:
    settings = Settings(
        webhook_allow_http=False, webhook_allowed_networks=("10.0.0.0/8", "fd00:1::/64")
    )
    assert UrlPolicy.from_settings(settings) == UrlPolicy(
        allow_http=False, allowed_networks=(net("10.0.0.0/8"), net("fd00:1::/64"))
    )
    assert UrlPolicy.from_settings(Settings()).allowed_networks == ()


# --- resolution -------------------------------------------------------------------------


async def test_a_host_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused) as e:
        await check_webhook_url(
            "https://vawg.example/hooks?token=s3cret", STRICT, resolve=resolver("127.0.0.1")
        )
    assert e.value.detail == (
        "webhook.url is refused: vawg.example resolves to 127.0.0.1, a loopback address; "
        "webhooks reach public addresses only unless an operator allow-lists the network "
        "(ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS)"
    )
    assert "s3cret" not in str(e.value)


async def test_one_refused_address_among_public_ones_refuses_the_url() -> None:
    with pytest.raises(WebhookUrlRefused, match=r"resolves to 10\.1\.2\.3, a private address"):
        await check_webhook_url(
            "https://vawg.example/", STRICT, resolve=resolver("93.184.215.14", "10.1.2.3")
        )


async def test_a_host_resolving_to_cloud_metadata_is_refused_without_the_allowlist_hint() -> None:
    policy = UrlPolicy(allow_http=False, allowed_networks=(net("169.254.0.0/16"),))
    with pytest.raises(WebhookUrlRefused) as e:
        await check_webhook_url("https://m.example/", policy, resolve=resolver("169.254.169.254"))
    assert "a cloud metadata address; cloud metadata endpoints are never reachable" in str(e.value)


async def test_a_host_resolving_to_public_addresses_only_is_accepted() -> None:
    public = resolver("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    await check_webhook_url("https://vawg.example/hooks?x=1", STRICT, resolve=public)


async def test_an_allow_listed_private_host_is_accepted() -> None:
    policy = UrlPolicy(allow_http=False, allowed_networks=(net("10.0.0.0/8"),))
    await check_webhook_url("https://vawg.internal/", policy, resolve=resolver("10.9.8.7"))


async def test_an_ip_literal_is_judged_without_resolving() -> None:
    async def must_not_resolve(host: str, port: int) -> Sequence[IPAddress]:
        raise AssertionError("resolved")

    await check_webhook_url("https://93.184.215.14/", STRICT, resolve=must_not_resolve)
    with pytest.raises(WebhookUrlRefused, match="192.168.0.1 is a private address"):
        await check_webhook_url("https://192.168.0.1/", STRICT, resolve=must_not_resolve)


async def test_localhost_with_the_system_resolver_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused, match=r"localhost resolves to \S+, a loopback address"):
        await check_webhook_url("https://localhost:8443/hooks", STRICT)


async def test_an_unknown_host_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(WebhookUrlRefused, match="no-such-host.invalid does not resolve"):
        await check_webhook_url("https://no-such-host.invalid/hooks", STRICT)


async def test_a_resolver_error_or_an_empty_answer_is_refused() -> None:
    async def unknown(host: str, port: int) -> Sequence[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(WebhookUrlRefused, match=r"does not resolve \(Name or service not known\)"):
        await check_webhook_url("https://vawg.example/", STRICT, resolve=unknown)
    with pytest.raises(WebhookUrlRefused, match="vawg.example does not resolve$"):
        await check_webhook_url("https://vawg.example/", STRICT, resolve=resolver())


async def test_a_resolver_that_hangs_is_refused_in_time() -> None:
    async def hangs(host: str, port: int) -> Sequence[IPAddress]:
        await asyncio.sleep(30)
        return []

    with pytest.raises(WebhookUrlRefused, match="did not resolve within 0.05 seconds"):
        await check_webhook_url("https://vawg.example/", STRICT, resolve=hangs, timeout=0.05)
