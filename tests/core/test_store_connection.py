"""The database URL's TLS options (services.core.store.connection), without a server."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from services.core.errors import ConfigurationError
from services.core.store.connection import connection_for, verified_tls
from tests.certs import TestCA

BASE = "postgresql+asyncpg://broker:synthetic-pw@db.example:5432/isa"


def test_verify_full_checks_chain_and_host_name(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    conn = connection_for(f"{BASE}?sslmode=verify-full&sslrootcert={ca.cert_file}")
    context = conn.connect_args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # the driver gets no option it does not know
    assert dict(conn.url.query) == {}
    assert conn.url.host == "db.example" and conn.url.database == "isa"


def test_verify_ca_checks_the_chain_only(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    context = connection_for(f"{BASE}?sslmode=verify-ca&sslrootcert={ca.cert_file}").connect_args[
        "ssl"
    ]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_a_client_certificate_is_loaded(tmp_path: Path) -> None:
    ca = TestCA(tmp_path)
    client = ca.client("isa-broker")
    conn = connection_for(
        f"{BASE}?sslmode=verify-full&sslrootcert={ca.cert_file}"
        f"&sslcert={client.cert_file}&sslkey={client.key_file}"
    )
    assert isinstance(conn.connect_args["ssl"], ssl.SSLContext)


def test_other_query_options_pass_through() -> None:
    conn = connection_for(f"{BASE}?prepared_statement_cache_size=0")
    assert conn.connect_args == {}
    assert dict(conn.url.query) == {"prepared_statement_cache_size": "0"}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sslmode=strict", "sslmode='strict' is not one of"),
        ("sslrootcert=/etc/ca.pem", "gives TLS files but no sslmode"),
        ("sslmode=verify-full&sslcert=/etc/c.pem", "sslcert and sslkey go together"),
        ("sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "sslrootcert /nonexistent"),
    ],
)
def test_bad_tls_options_are_named_without_the_url(query: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        connection_for(f"{BASE}?{query}")
    assert problem in str(info.value)
    assert "synthetic-pw" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "verified"),
    [
        (f"{BASE}?sslmode=verify-full", True),
        (f"{BASE}?ssl=verify-full", True),
        (f"{BASE}?sslmode=verify-ca", False),
        (f"{BASE}?sslmode=require", False),
        (BASE, False),
        ("postgresql+asyncpg://broker@/isa?host=/run/postgresql", True),
    ],
)
def test_what_counts_as_verified_tls(url: str, verified: bool) -> None:
    assert verified_tls(url) is verified


def test_sqlite_urls_are_left_alone(tmp_path: Path) -> None:
    conn = connection_for(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert conn.connect_args == {}
