"""Which webhook URLs the broker will call, and a connection path that keeps to that answer
(a defence against server-side request forgery, OWASP SSRF Prevention Cheat Sheet).

A webhook URL names a host that the broker connects to from inside its own network, so a
subscriber could otherwise point it at a loopback admin port, a private service or a cloud
metadata endpoint. Rules:

* the URL is an absolute ``https`` URL (``http`` only where :attr:`UrlPolicy.allow_http`),
  with a host name, no credentials, no fragment and a port in 1-65535 (:func:`check_url_form`;
  :func:`check_url_syntax` judges an IP-literal host too, :func:`check_webhook_url` resolves
  a host name and judges its addresses);
* every address the host resolves to must be globally routable (:func:`refusal_reason`),
  unless an operator allow-lists its network (``ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS``); an
  IPv6 address embedding an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by the IPv4 one;
* cloud metadata endpoints are refused even inside an allow-listed network;
* at delivery time the host is resolved once per connection, every address is checked, and
  the connection goes to a checked address (:class:`GuardedNetworkBackend`), so DNS answering
  differently between the check and the connection (rebinding) cannot reach an unchecked
  address. TLS still verifies the certificate against the host name: httpcore takes the SNI
  and verified name from the request's origin, not from the address connected to.

URLs are parsed with ``httpx.URL``, the parser the delivery client uses, so the host checked
here is the host connected to. Messages name the host and addresses, never the query string
(it may carry a token).

The delivery-time connection path is :mod:`.connect`.

Errors::

    InvalidRequest
    └── WebhookUrlRefused    422  webhook_url_refused   (API time: names why)
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

from services.core.errors import InvalidRequest
from services.core.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``; raises OSError (socket.gaierror) when the host is unknown
Resolve = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

_net = ipaddress.ip_network

CLOUD_METADATA = "cloud metadata"
#: Instance metadata and platform endpoints: refused always, even when allow-listed.
CLOUD_METADATA_ADDRESSES: tuple[IPNetwork, ...] = tuple(
    _net(a)
    for a in (
        "169.254.169.254/32",  # AWS, GCP, Azure IMDS, OpenStack, DigitalOcean, ...
        "169.254.170.2/32",  # AWS ECS task metadata and credentials
        "169.254.170.23/32",  # AWS EKS Pod Identity agent
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "fd00:ec2::23/128",  # AWS EKS Pod Identity agent over IPv6
        "100.100.100.200/32",  # Alibaba Cloud
        "168.63.129.16/32",  # Azure WireServer (a "global" address)
        "192.0.0.192/32",  # Oracle Cloud
    )
)

# Special-purpose ranges (IANA IPv4/IPv6 Special-Purpose Address Registries), first match
# names the category. Anything else that Python does not call global is refused as well.
_V4_CATEGORIES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (_net(n), c)
    for n, c in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "reserved ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (100.64.0.0/10, CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    )
)
_V6_CATEGORIES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (_net(n), c)
    for n, c in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo"),
        ("2001:2::/48", "benchmarking"),
        ("2001:db8::/32", "documentation"),
        ("2001::/23", "IETF protocol assignment"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = _net("64:ff9b::/96")

_ALLOWLIST_HINT = (
    "webhooks reach public addresses only unless an operator allow-lists the network "
    "(ISA_BROKER_WEBHOOK_ALLOWED_NETWORKS)"
)
_METADATA_HINT = "cloud metadata endpoints are never reachable"
_HOST_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class WebhookUrlRefused(InvalidRequest):
    """The webhook URL, or an address its host resolves to, may not be called."""

    code = "webhook_url_refused"
    status = 422
    title = "Webhook URL refused"


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> UrlPolicy:
        return cls(
            allow_http=settings.webhooks.allow_http,
            allowed_networks=tuple(_net(n) for n in settings.webhooks.allowed_networks),
        )


# --- addresses --------------------------------------------------------------------------


def _embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address really leads to, and how it is embedded."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    return None


def _category(ip: IPAddress) -> str | None:
    table = _V4_CATEGORIES if isinstance(ip, ipaddress.IPv4Address) else _V6_CATEGORIES
    for network, category in table:
        if ip in network:
            return category
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_reserved:
        return "reserved"
    return None if ip.is_global else "non-public"


def _judge(ip: IPAddress, policy: UrlPolicy) -> tuple[str, str] | None:
    """``(category, note)`` when ``ip`` is refused, else None."""
    embedded = _embedded_ipv4(ip)
    target = embedded[0] if embedded else ip
    note = f" (it embeds {embedded[0]}, {embedded[1]})" if embedded else ""
    if any(a in n for a in (ip, target) for n in CLOUD_METADATA_ADDRESSES):
        return CLOUD_METADATA, note
    if any(target in n for n in policy.allowed_networks):
        return None
    category = _category(target)
    return None if category is None else (category, note)


def refusal_reason(ip: IPAddress, policy: UrlPolicy) -> str | None:
    """Why webhooks may not reach ``ip`` (its category, e.g. ``loopback``), or None when
    they may: it is globally routable or inside an allow-listed network, and no cloud
    metadata endpoint."""
    judged = _judge(ip, policy)
    return None if judged is None else judged[0] + judged[1]


def _address_refused(subject: str, category: str, note: str) -> WebhookUrlRefused:
    article = "an" if category[0].lower() in "aeiou" else "a"
    hint = _METADATA_HINT if category == CLOUD_METADATA else _ALLOWLIST_HINT
    return WebhookUrlRefused(
        f"webhook.url is refused: {subject} {article} {category} address{note}; {hint}"
    )


# --- URLs -------------------------------------------------------------------------------


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_url_form(url: str, policy: UrlPolicy) -> httpx.URL:
    """The parsed URL when its form is acceptable, addresses aside: scheme, host, no
    credentials, no fragment, port. Raises :class:`WebhookUrlRefused` naming why not."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise WebhookUrlRefused("webhook.url is not a valid URL") from e
    if parsed.scheme == "http" and not policy.allow_http:
        raise WebhookUrlRefused(
            "webhook.url must use https (plain http is allowed in dev mode only)"
        )
    if parsed.scheme not in ("http", "https"):
        schemes = "an http or https" if policy.allow_http else "an https"
        raise WebhookUrlRefused(f"webhook.url must be {schemes} URL")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise WebhookUrlRefused("webhook.url has no host name")
    if parsed.userinfo:
        raise WebhookUrlRefused("webhook.url must not carry credentials (user:password@)")
    if parsed.fragment or "#" in url:
        raise WebhookUrlRefused("webhook.url must not have a fragment (#...)")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise WebhookUrlRefused("webhook.url port must be between 1 and 65535")
    if _ip_literal(host) is not None:
        return parsed
    if not _HOST_NAME.match(host):
        raise WebhookUrlRefused(f"webhook.url host {host} is not a valid host name")
    if _NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        raise WebhookUrlRefused(
            f"webhook.url host {host} is neither a host name nor a dotted-decimal IPv4 address"
        )
    return parsed


def check_url_syntax(url: str, policy: UrlPolicy) -> httpx.URL:
    """:func:`check_url_form`, and the address check when the host is an IP literal."""
    parsed = check_url_form(url, policy)
    ip = _ip_literal(parsed.raw_host.decode("ascii"))
    judged = None if ip is None else _judge(ip, policy)
    if judged is not None:
        raise _address_refused(f"{ip} is", *judged)
    return parsed


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The host's TCP addresses, in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            ip = ipaddress.ip_address(str(sockaddr[0]))
            if ip not in addresses:
                addresses.append(ip)
    return addresses


async def check_webhook_url(
    url: str, policy: UrlPolicy, *, resolve: Resolve | None = None, timeout: float = 10.0
) -> None:
    """Refuse (:class:`WebhookUrlRefused`) a URL of the wrong form, a host that does not
    resolve, or one with any address that :func:`refusal_reason` refuses."""
    parsed = check_url_syntax(url, policy)
    host = parsed.raw_host.decode("ascii")
    if _ip_literal(host) is not None:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        async with asyncio.timeout(timeout):
            addresses = await (resolve or resolve_host)(host, port)
    except TimeoutError as e:
        raise WebhookUrlRefused(
            f"webhook.url is refused: {host} did not resolve within {timeout:g} seconds"
        ) from e
    except OSError as e:
        raise WebhookUrlRefused(
            f"webhook.url is refused: {host} does not resolve ({e.strerror or e})"
        ) from e
    if not addresses:
        raise WebhookUrlRefused(f"webhook.url is refused: {host} does not resolve")
    for ip in addresses:
        judged = _judge(ip, policy)
        if judged is not None:
            raise _address_refused(f"{host} resolves to {ip},", *judged)
