"""The store's engine and its transactions, shared by every part of :class:`~.store.Store`.

:meth:`StoreBase.transaction` is the unit of work domain code writes through: ``async with
store.transaction() as tx:`` gives typed repositories over one transaction
(:class:`~.transaction.Transaction`), and everything written through them commits or rolls
back together. The one-call methods of the store's parts each open one such transaction
themselves. No SQLAlchemy or driver error escapes except as :class:`Unavailable`."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ..errors import Unavailable
from .connection import connection_for
from .migrate import head, newer_than_code, revision, upgrade
from .transaction import Transaction

#: connections each process keeps open to PostgreSQL (``ISA_BROKER_DATABASE_POOL_SIZE``)
DEFAULT_POOL_SIZE = 10


class StoreBase:
    """The engine, and transactions over it."""

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.url = url
        # TLS options of the URL (sslmode, sslrootcert, ...) become the driver's SSL context
        connection = connection_for(url)
        kwargs: dict[str, Any] = {"connect_args": dict(connection.connect_args)}
        if url.startswith("sqlite"):
            kwargs["connect_args"]["timeout"] = 30
        else:
            # Connections kept open, and as many again opened for a burst and closed after
            # it. SQLAlchemy's default keeps five: under a few dozen concurrent requests most
            # transactions then opened a connection (TLS handshake included) and closed it.
            kwargs |= {"pool_size": pool_size, "max_overflow": pool_size}
        self.engine: AsyncEngine = create_async_engine(connection.url, **kwargs)
        # SQLite has one writer at a time and makes a waiting writer sleep in growing steps
        # (up to 100 ms each); queueing this process's transactions here instead keeps its
        # own writers from ever waiting on each other that way.
        self._serial: asyncio.Lock | None = None
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            self._serial = asyncio.Lock()

    async def init_schema(self) -> None:
        """Apply any pending schema migration (see :mod:`services.core.store.migrate`)."""
        try:
            await upgrade(self.engine)
        except (DBAPIError, OSError, ssl.SSLError) as e:
            # unreachable, refused (pg_hba.conf, password), or a certificate that does not verify
            where = self.engine.url.render_as_string()  # the password, if any, is masked
            reason = getattr(e, "orig", None) or e
            raise Unavailable(
                f"the store at {where} is unavailable ({type(reason).__name__}: {reason})"
            ) from e

    async def schema_is_current(self) -> bool:
        """Whether no migration is pending (readiness): the database is at this code's newest
        schema, or at a newer one (a later version migrated it during a rolling upgrade;
        migrations only add, so this process still works). Raises :class:`Unavailable`
        when the store cannot be reached."""
        try:
            at = await revision(self.engine)
            return at == head() or newer_than_code(at)
        except (DBAPIError, OSError, ssl.SSLError) as e:
            reason = getattr(e, "orig", None) or e
            raise Unavailable(f"the store is unreachable ({type(reason).__name__})") from e

    async def aclose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._serial or contextlib.nullcontext(), self.engine.begin() as conn:
                yield conn
        except OperationalError as e:
            raise Unavailable("the store is unavailable") from e

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """One unit of work: typed repositories over one transaction, committed when the
        block ends and rolled back if it raises."""
        async with self._tx() as c:
            yield Transaction(c)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
