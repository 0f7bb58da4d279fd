"""How the store connects: the database URL's TLS options, written as libpq writes them, made
into an ``ssl.SSLContext`` for asyncpg.

A PostgreSQL URL may carry ``sslmode`` (``disable``, ``require``, ``verify-ca``,
``verify-full``; ``ssl`` is accepted as its alias), ``sslrootcert`` (PEM file of the CAs that
sign the server's certificate; default: the system's trust store), and ``sslcert`` /
``sslkey`` (a client certificate). asyncpg reads none of the file options from keyword
arguments, so they are taken out of the URL here and given to the driver as one context:

- ``verify-full``: the chain is checked against the CAs and the host name against the
  certificate (what production requires, see :func:`verified_tls`);
- ``verify-ca``: the chain is checked, the host name not;
- ``require``: encrypted, the server not authenticated (dev only).

Errors name the URL option and the file, never the URL itself (it may hold a password)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import ConfigurationError

TLS_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
TLS_OPTIONS = ("sslmode", "ssl", "sslrootcert", "sslcert", "sslkey")


@dataclass(frozen=True)
class DatabaseConnection:
    """The URL given to SQLAlchemy (TLS options removed) and the driver's connect arguments."""

    url: URL
    connect_args: dict[str, Any] = field(default_factory=dict)


#: the drivers the store runs on; a URL naming the database alone gets its driver here
DRIVERS = {"postgresql": "postgresql+asyncpg", "sqlite": "sqlite+aiosqlite"}


def parse_url(url: str) -> URL:
    """The database URL, its driver made explicit (``postgresql://`` is
    ``postgresql+asyncpg://``); another driver is refused, naming the ones supported."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            "ISA_BROKER_DATABASE_URL is not a database URL "
            "(expected postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full)"
        ) from None
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    driver = DRIVERS.get(backend)
    if driver is None or parsed.drivername not in (backend, driver):
        raise ConfigurationError(
            f"ISA_BROKER_DATABASE_URL: the driver {parsed.drivername!r} is not supported; "
            f"use {' or '.join(d + '://' for d in DRIVERS.values())}"
        )
    return parsed.set(drivername=driver)


def tls_mode(url: URL) -> str | None:
    mode = url.query.get("sslmode", url.query.get("ssl"))
    if isinstance(mode, tuple):
        raise ConfigurationError("ISA_BROKER_DATABASE_URL: sslmode is given more than once")
    return mode


def local_socket(url: URL) -> bool:
    """Whether the URL names a Unix socket (``?host=/run/postgresql``) rather than TCP."""
    host = url.query.get("host")
    return isinstance(host, str) and host.startswith("/")


def verified_tls(url: str) -> bool:
    """Whether a PostgreSQL URL asks for TLS with full verification, or connects through a
    local socket (where there is no network to protect)."""
    parsed = parse_url(url)
    return local_socket(parsed) or tls_mode(parsed) == "verify-full"


def connection_for(url: str) -> DatabaseConnection:
    parsed = parse_url(url)
    if not parsed.drivername.startswith("postgresql"):
        return DatabaseConnection(parsed)
    mode = tls_mode(parsed)
    query = {k: v for k, v in parsed.query.items() if k not in TLS_OPTIONS}
    stripped = parsed.set(query=query)
    if mode is None:
        if any(k in parsed.query for k in TLS_OPTIONS):
            raise ConfigurationError(
                "ISA_BROKER_DATABASE_URL gives TLS files but no sslmode: add sslmode=verify-full"
            )
        return DatabaseConnection(stripped)
    if mode not in TLS_MODES:
        raise ConfigurationError(
            f"ISA_BROKER_DATABASE_URL: sslmode={mode!r} is not one of {', '.join(TLS_MODES)}"
        )
    if mode in ("disable", "allow", "prefer"):
        # asyncpg's own handling of these modes (no certificate checks in any of them)
        return DatabaseConnection(stripped, {"ssl": mode})
    return DatabaseConnection(stripped, {"ssl": _context(parsed, mode)})


def _option(url: URL, name: str) -> str | None:
    value = url.query.get(name)
    if isinstance(value, tuple):
        raise ConfigurationError(f"ISA_BROKER_DATABASE_URL: {name} is given more than once")
    return value


def _context(url: URL, mode: str) -> ssl.SSLContext:
    rootcert = _option(url, "sslrootcert")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=rootcert)
    except (OSError, ssl.SSLError) as e:
        raise ConfigurationError(
            f"ISA_BROKER_DATABASE_URL: sslrootcert {rootcert} cannot be loaded ({type(e).__name__})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "verify-full":
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    elif mode == "verify-ca":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
    else:  # require: encrypted, server not authenticated
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert, key = _option(url, "sslcert"), _option(url, "sslkey")
    if (cert is None) != (key is None):
        raise ConfigurationError("ISA_BROKER_DATABASE_URL: sslcert and sslkey go together")
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(
                f"ISA_BROKER_DATABASE_URL: the client certificate {cert} with key {key} "
                f"cannot be loaded ({type(e).__name__})"
            ) from None
    return context
