"""Store methods for the parties' public encryption keys (per-recipient encryption, see
:mod:`services.core.crypto.recipient`). Part of :class:`~services.core.store.store.Store`.

A party may hold several keys: deliveries are sealed to its newest key not retired, so a new
key takes over as soon as it is registered, and the agency keeps its older private keys for
records already sealed to them. Registering and retiring are in the disclosure log (key id
and thumbprint only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from . import tables as t
from .base import StoreBase
from .rows import row_dict
from .sql import append_audit

_k = t.party_keys
#: subscriptions whose deliveries need the party's key: every Kafka one, and webhooks that
#: asked for encrypted bodies
_s = t.subscriptions
_NEEDS_KEY = sa.and_(
    _s.c.status.in_(("active", "disabled")),
    sa.or_(_s.c.channel == "kafka", _s.c.encrypt.is_(True)),
)


class KeyInUse(Exception):
    """The party's last key while a subscription needs one."""


class PartyKeyStore(StoreBase):
    """Part of :class:`~services.core.store.store.Store`."""

    async def add_party_key(
        self, party: str, jwk: dict[str, Any], thumbprint: str, by_client: str, now: dt.datetime
    ) -> dict[str, Any]:
        """Register a public key (validated by the caller). ``ValueError`` when the party
        already holds a key with that ``kid`` or that thumbprint."""
        row = {
            "party": party,
            "kid": jwk["kid"],
            "jwk": jwk,
            "thumbprint": thumbprint,
            "created_at": now,
            "created_by": by_client,
            "retired_at": None,
        }
        try:
            async with self._tx() as c:
                dup = await c.execute(
                    sa.select(_k.c.kid).where(_k.c.party == party, _k.c.thumbprint == thumbprint)
                )
                if dup.first() is not None:
                    raise ValueError("this public key is already registered for the party")
                await c.execute(_k.insert().values(**row))
                await append_audit(
                    c,
                    "encryption_key_registered",
                    actor=party,
                    detail={"kid": jwk["kid"], "thumbprint": thumbprint, "client_id": by_client},
                )
        except IntegrityError as e:
            raise ValueError(f"the party already has a key with kid {jwk['kid']!r}") from e
        return row

    async def party_keys(self, party: str) -> list[dict[str, Any]]:
        """Every key of the party, newest first, retired ones included."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(_k)
                .where(_k.c.party == party)
                .order_by(_k.c.created_at.desc(), _k.c.kid.desc())
            )
            return [row_dict(x) for x in r.all()]

    async def current_party_key(self, party: str) -> dict[str, Any] | None:
        """The public JWK deliveries to ``party`` are sealed to now, or None."""
        async with self._tx() as c:
            r = await c.execute(
                sa.select(_k.c.jwk)
                .where(_k.c.party == party, _k.c.retired_at.is_(None))
                .order_by(_k.c.created_at.desc(), _k.c.kid.desc())
                .limit(1)
            )
            row = r.first()
            return dict(row[0]) if row is not None else None

    async def retire_party_key(
        self, party: str, kid: str, by_client: str, now: dt.datetime
    ) -> dict[str, Any] | None:
        """Retire a key (nothing new is sealed to it). None when the party has no such key;
        :class:`KeyInUse` when it is the last one not retired and a subscription of the party
        needs a key. Retiring a retired key changes nothing."""
        async with self._tx() as c:
            r = await c.execute(sa.select(_k).where(_k.c.party == party, _k.c.kid == kid))
            row = r.first()
            if row is None:
                return None
            key = row_dict(row)
            if key["retired_at"] is not None:
                return key
            others = await c.execute(
                sa.select(sa.func.count())
                .select_from(_k)
                .where(_k.c.party == party, _k.c.kid != kid, _k.c.retired_at.is_(None))
            )
            if not others.scalar_one():
                needing = await c.execute(
                    sa.select(sa.func.count())
                    .select_from(_s)
                    .where(_s.c.party == party, _NEEDS_KEY)
                )
                if needing.scalar_one():
                    raise KeyInUse(kid)
            await c.execute(
                _k.update().where(_k.c.party == party, _k.c.kid == kid).values(retired_at=now)
            )
            await append_audit(
                c,
                "encryption_key_retired",
                actor=party,
                detail={"kid": kid, "thumbprint": key["thumbprint"], "client_id": by_client},
            )
            key["retired_at"] = now
            return key
