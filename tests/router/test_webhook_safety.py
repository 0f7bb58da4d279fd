"""The webhook sender against real local receivers: refused addresses get no connection at
all, redirects are not followed, a host answering differently from one resolution to the next
(DNS rebinding) cannot lead to an unchecked address, and TLS verifies the host name although
the connection is made to an address."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
import time
import typing
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.core.crypto.keys import new_webhook_secret
from services.core.webhooks.connect import GuardedNetworkBackend, GuardedTransport
from services.core.webhooks.urls import (
    IPAddress,
    UrlPolicy,
    check_webhook_url,
)
from services.router.webhook import WebhookSender, describe_error

LOOPBACK = UrlPolicy(allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
PUBLIC_ONLY = UrlPolicy(allow_http=True)
BODY = b'{"specversion":"1.0","id":"m1","data":{}}'


@dataclass
class Seen:
    request_line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A bare HTTP/1.1 server that counts connections and keeps the requests it got."""

    host: str = "127.0.0.1"
    port: int = 0
    status: int = 204
    reply_headers: dict[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None
    connections: int = 0
    requests: list[Seen] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, path: str = "/hooks", host: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Seen(head[0], headers, body))
            extra = "".join(f"{k}: {v}\r\n" for k, v in self.reply_headers.items())
            writer.write(
                f"HTTP/1.1 {self.status} Test\r\ncontent-length: 0\r\n"
                f"connection: close\r\n{extra}\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def running(*receivers: Receiver) -> AsyncIterator[None]:
    started: list[Receiver] = []
    try:
        for r in receivers:
            started.append(await r.start())
        yield
    finally:
        for r in started:
            await r.stop()


@contextlib.asynccontextmanager
async def sender(policy: UrlPolicy, **kw: typing.Any) -> AsyncIterator[WebhookSender]:
    s = WebhookSender(5, policy, **kw)
    try:
        yield s
    finally:
        await s.aclose()


async def attempt(s: WebhookSender, url: str) -> typing.Any:
    return await s.attempt(url, [new_webhook_secret()], "msg_1", BODY, int(time.time()))


class Rebinding:
    """Answers ``first`` to the first resolution and ``then`` to every later one."""

    def __init__(self, first: str, then: str) -> None:
        self.first, self.then = first, then
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.calls.append(host)
        answer = self.first if len(self.calls) == 1 else self.then
        return [ipaddress.ip_address(answer)]


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records the hosts it is asked to connect to; connects for real or not at all."""

    def __init__(self, connect: bool) -> None:
        self.hosts: list[str] = []
        self._connect = connect
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        if not self._connect:
            raise httpcore.ConnectError(f"test backend: not connecting to {host}")
        return await self._real.connect_tcp(host, port, timeout=timeout)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --- refusals and delivery --------------------------------------------------------------


async def test_loopback_is_refused_before_any_connection_when_not_allow_listed() -> None:
    receiver = Receiver()
    async with running(receiver), sender(PUBLIC_ONLY) as s:
        result = await attempt(s, receiver.url("/hooks?token=s3cret"))
        by_name = await attempt(s, receiver.url("/hooks?token=s3cret", host="localhost"))
    assert not result.ok and result.retryable and result.status_code is None
    assert result.error == "ConnectError: address refused: loopback (127.0.0.1)"
    assert not by_name.ok
    assert by_name.error.startswith("ConnectError: address refused: loopback (localhost resolves")
    assert "s3cret" not in result.error + by_name.error
    assert receiver.connections == 0 and receiver.requests == []


async def test_delivered_when_loopback_is_allow_listed() -> None:
    receiver = Receiver()
    async with running(receiver), sender(LOOPBACK) as s:
        result = await attempt(s, receiver.url("/hooks/vawg"))
    assert result.ok and result.status_code == 204 and result.error is None
    [seen] = receiver.requests
    assert seen.request_line == "POST /hooks/vawg HTTP/1.1"
    assert seen.body == BODY and seen.headers["webhook-id"] == "msg_1"
    assert seen.headers["webhook-signature"].startswith("v1,")


async def test_a_redirect_is_not_followed() -> None:
    target = Receiver()
    async with running(target):
        redirecting = Receiver(status=302, reply_headers={"location": target.url("/elsewhere")})
        async with running(redirecting), sender(LOOPBACK) as s:
            result = await attempt(s, redirecting.url())
    assert not result.ok and result.retryable and result.status_code == 302
    assert result.error == "redirect not followed (HTTP 302)"
    assert len(redirecting.requests) == 1
    assert target.connections == 0


async def test_plain_http_is_refused_at_attempt_time_where_the_policy_forbids_it() -> None:
    receiver = Receiver()
    strict = UrlPolicy(allow_http=False, allowed_networks=LOOPBACK.allowed_networks)
    async with running(receiver), sender(strict) as s:
        result = await attempt(s, receiver.url("/hooks?token=s3cret"))
    assert not result.ok and result.retryable
    assert result.error == "webhook.url must use https (plain http is allowed in dev mode only)"
    assert receiver.connections == 0


async def test_environment_proxies_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Receiver()
    receiver = Receiver()
    async with running(proxy, receiver):
        monkeypatch.setenv("HTTP_PROXY", proxy.url(""))
        monkeypatch.setenv("ALL_PROXY", proxy.url(""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        async with sender(LOOPBACK) as s:
            result = await attempt(s, receiver.url())
    assert result.ok and proxy.connections == 0 and len(receiver.requests) == 1


# --- DNS rebinding ----------------------------------------------------------------------


async def test_rebinding_after_the_check_is_refused_at_connection() -> None:
    """The subscription API checks a host that resolves to an allowed address; by delivery
    time it resolves to another one. The connection is never made to the unchecked one."""
    allowed = Receiver(host="127.0.0.1")
    async with running(allowed):
        internal = Receiver(host="127.0.0.2", port=allowed.port)
        try:
            await internal.start()
        except OSError as e:
            pytest.skip(f"cannot listen on 127.0.0.2: {e}")
        try:
            policy = UrlPolicy(True, (ipaddress.ip_network("127.0.0.1/32"),))
            dns = Rebinding(first="127.0.0.1", then="127.0.0.2")
            url = allowed.url(host="rebind.test")
            await check_webhook_url(url, policy, resolve=dns)  # the API's check passes
            async with sender(policy, resolve=dns) as s:
                result = await attempt(s, url)
        finally:
            await internal.stop()
    assert not result.ok
    assert result.error == (
        "ConnectError: address refused: loopback (rebind.test resolves to 127.0.0.2)"
    )
    assert internal.connections == 0 and allowed.connections == 0
    assert dns.calls == ["rebind.test", "rebind.test"]


async def test_the_connection_goes_to_the_address_checked_and_is_not_resolved_again() -> None:
    """Resolved once per connection; the checked address, not the name, is connected to, so
    a resolver that would answer differently next time is never asked again."""
    allowed = Receiver(host="127.0.0.1")
    async with running(allowed):
        internal = Receiver(host="127.0.0.2", port=allowed.port)
        try:
            await internal.start()
        except OSError as e:
            pytest.skip(f"cannot listen on 127.0.0.2: {e}")
        try:
            policy = UrlPolicy(True, (ipaddress.ip_network("127.0.0.1/32"),))
            dns = Rebinding(first="127.0.0.1", then="127.0.0.2")
            inner = RecordingBackend(connect=True)
            transport = GuardedTransport(policy, resolve=dns, backend=inner)
            async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                first = await client.post(allowed.url(host="rebind.test"), content=BODY)
                with pytest.raises(httpx.ConnectError, match="address refused: loopback"):
                    await client.post(allowed.url(host="rebind.test"), content=BODY)
        finally:
            await internal.stop()
    assert first.status_code == 204
    assert inner.hosts == ["127.0.0.1"]  # by address, once: never "rebind.test"
    assert dns.calls == ["rebind.test", "rebind.test"]  # one per connection
    [seen] = allowed.requests
    assert seen.headers["host"] == f"rebind.test:{allowed.port}"
    assert internal.connections == 0


async def test_a_public_first_answer_is_the_address_connected_to() -> None:
    """First answer public, later answers loopback: the connection is attempted to the
    public address that was checked (not reachable from the test, so it fails there)."""
    dns = Rebinding(first="93.184.215.14", then="127.0.0.1")
    inner = RecordingBackend(connect=False)
    backend = GuardedNetworkBackend(PUBLIC_ONLY, resolve=dns, backend=inner)
    with pytest.raises(httpcore.ConnectError, match="not connecting to 93.184.215.14"):
        await backend.connect_tcp("rebind.test", 443, timeout=5)
    assert inner.hosts == ["93.184.215.14"] and dns.calls == ["rebind.test"]
    with pytest.raises(httpcore.ConnectError, match=r"address refused: loopback \(rebind"):
        await backend.connect_tcp("rebind.test", 443, timeout=5)
    assert inner.hosts == ["93.184.215.14"]


async def test_any_refused_address_refuses_the_connection() -> None:
    async def mixed(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("93.184.215.14"), ipaddress.ip_address("10.0.0.1")]

    inner = RecordingBackend(connect=False)
    backend = GuardedNetworkBackend(PUBLIC_ONLY, resolve=mixed, backend=inner)
    with pytest.raises(httpcore.ConnectError, match=r"address refused: private \(h.test res"):
        await backend.connect_tcp("h.test", 443)
    assert inner.hosts == []


# --- TLS --------------------------------------------------------------------------------


def _certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``name`` signed by it: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.UTC)

    def build(
        subject: str, issuer: str, key: ec.EllipticCurvePrivateKey, ca: bool
    ) -> x509.CertificateBuilder:
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return b

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("test CA", "test CA", ca_key, True).sign(ca_key, hashes.SHA256())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, "test CA", key, False).sign(ca_key, hashes.SHA256())
    paths = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_tls_verifies_the_host_name_although_the_address_is_connected_to(
    tmp_path: Path,
) -> None:
    ca, cert, key = _certificates(tmp_path, "hooks.test")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_context.sni_callback = lambda _obj, name, _ctx: sni.append(name)
    client_context = ssl.create_default_context(cafile=str(ca))

    async def to_loopback(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    receiver = Receiver(ssl_context=server_context)
    async with (
        running(receiver),
        sender(LOOPBACK, resolve=to_loopback, ssl_context=client_context) as s,
    ):
        named = await attempt(s, receiver.url(host="hooks.test", scheme="https"))
        other_name = await attempt(s, receiver.url(host="other.test", scheme="https"))
        by_address = await attempt(s, receiver.url(scheme="https"))
    assert named.ok and named.status_code == 204
    assert sni[0] == "hooks.test"
    assert not other_name.ok and "CERTIFICATE_VERIFY_FAILED" in (other_name.error or "")
    assert "Hostname mismatch" in (other_name.error or "")
    assert not by_address.ok and "CERTIFICATE_VERIFY_FAILED" in (by_address.error or "")
    assert len(receiver.requests) == 1


def test_an_error_text_never_carries_the_query_string() -> None:
    url = "https://hooks.example/in?token=s3cret&x=1"
    error = httpx.ConnectError(f"could not reach {url}")
    assert describe_error(error, url) == (
        "ConnectError: could not reach https://hooks.example/in?[redacted]"
    )
    assert describe_error(httpx.ReadTimeout(""), url) == "ReadTimeout"
