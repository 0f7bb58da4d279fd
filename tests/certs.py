"""Certificates made per test run with ``cryptography``: a CA, and server or client
certificates it signs, written as PEM files. Nothing here is ever reused across runs."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)
    return path


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path


class TestCA:
    """``ca = TestCA(folder, "isa test CA")``; ``ca.server(["127.0.0.1", "localhost"])``."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, folder: Path, name: str = "isa-broker test CA", days: int = 2) -> None:
        self.folder = folder
        self.name = name
        self.days = days
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.cert_file = _write(
            folder / f"{_slug(name)}.pem", self.cert.public_bytes(serialization.Encoding.PEM)
        )

    def issue(
        self,
        subject: list[tuple[x509.ObjectIdentifier, str]],
        hosts: list[str] = (),  # type: ignore[assignment]
        usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,),
        stem: str | None = None,
    ) -> Issued:
        """A certificate for ``subject`` (attributes in order), valid for ``hosts`` (IP
        addresses or DNS names) and the extended key ``usages``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(oid, v) for oid, v in subject]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
            )
        cert = builder.sign(self.key, hashes.SHA256())
        path = self.folder / _slug(stem or subject[-1][1])
        return Issued(
            _write(path.with_suffix(".crt"), cert.public_bytes(serialization.Encoding.PEM)),
            _write(path.with_suffix(".key"), _pem_key(key), 0o600),
        )

    def server(self, hosts: list[str], common_name: str | None = None) -> Issued:
        """A server certificate for ``hosts`` (IP addresses or DNS names)."""
        return self.issue([(NameOID.COMMON_NAME, common_name or hosts[0])], hosts)

    def client(self, common_name: str) -> Issued:
        """A client certificate whose subject is ``CN=<common_name>``."""
        return self.issue(
            [(NameOID.COMMON_NAME, common_name)], usages=(ExtendedKeyUsageOID.CLIENT_AUTH,)
        )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)
