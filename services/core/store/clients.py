"""Store methods of the API clients (agencies' machine identities and their credentials) and
of the client assertions seen (replay protection). Part of :class:`~.store.Store`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import tables as t
from .base import StoreBase
from .rows import row_dict, row_or_none
from .sql import append_audit, insert_ignore


class ClientStore(StoreBase):
    async def add_client(
        self,
        client_id: str,
        party: str,
        scopes: list[str],
        *,
        secret_hash: str | None = None,
        jwks: dict[str, Any] | None = None,
        external_subject: str | None = None,
    ) -> None:
        """Raise :class:`ValueError` if ``external_subject`` is already another client's."""
        try:
            async with self._tx() as c:
                await c.execute(
                    t.clients.insert().values(
                        client_id=client_id,
                        party=party,
                        secret_hash=secret_hash,
                        jwks=jwks,
                        scopes=scopes,
                        external_subject=external_subject,
                        created_at=dt.datetime.now(dt.UTC),
                        disabled=False,
                    )
                )
                await append_audit(
                    c,
                    "client_registered",
                    actor=party,
                    detail={"client_id": client_id, "scopes": scopes},
                )
        except IntegrityError as e:
            raise ValueError("external_subject is already registered to another client") from e

    async def get_client(self, client_id: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).where(t.clients.c.client_id == client_id))
            return row_or_none(r.first())

    async def client_by_external_subject(self, subject: str) -> dict[str, Any] | None:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).where(t.clients.c.external_subject == subject))
            return row_or_none(r.first())

    async def list_clients(self) -> list[dict[str, Any]]:
        async with self._tx() as c:
            r = await c.execute(sa.select(t.clients).order_by(t.clients.c.created_at))
            return [row_dict(row) for row in r.all()]

    async def set_client_disabled(self, client_id: str, disabled: bool, actor: str) -> bool:
        async with self._tx() as c:
            r = await c.execute(
                t.clients.update()
                .where(t.clients.c.client_id == client_id)
                .values(disabled=disabled)
            )
            if not r.rowcount:
                return False
            await append_audit(
                c,
                "client_disabled" if disabled else "client_enabled",
                actor=actor,
                detail={"client_id": client_id},
            )
            return True

    async def remember_assertion(self, key: str, expires_at: dt.datetime, now: dt.datetime) -> bool:
        """Record a client assertion's ``iss:jti``; False if it was already seen and has not
        expired (a replay). Expired entries are purged on the way."""
        async with self._tx() as c:
            await c.execute(
                t.client_assertions.delete().where(t.client_assertions.c.expires_at <= now)
            )
            inserted = await c.execute(
                insert_ignore(c, t.client_assertions, {"key": key, "expires_at": expires_at})
            )
            return bool(inserted.rowcount)
