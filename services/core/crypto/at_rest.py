"""Webhook signing keys at rest: the ``whsec_`` secrets (v1) and ``whsk_`` secret keys (v1a)
of the subscriptions are stored sealed by the same envelope encryption as the Kafka records
(:mod:`.envelope`: a fresh AES-256-GCM data key per value, wrapped by the current
key-encryption key), so that whoever reads the ``subscriptions`` table, a backup or a dump
cannot sign webhooks as the broker. The associated data binds each value to its
subscription: a value copied to another row does not open.

A stored value is one ASCII string (the columns are text)::

    env1:<kek id>:<wrapped data key, base64>:<nonce || ciphertext || tag, base64>

A value without the ``env1:`` prefix is a key stored before sealing existed: it is used as
it is, and :func:`reseal_all` seals it (every gateway and router runs it at start-up, and
``isa-broker keys retire-kek`` before deleting a key-encryption key, so that no stored key
depends on a key-encryption key that is gone)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from .envelope import HEADER_DEK, HEADER_KEK, HEADER_SCHEME, SCHEME, Envelope, IntegrityFailed

if TYPE_CHECKING:
    from ..store import Store

PREFIX = "env1:"


def _aad(subscription_id: str) -> bytes:
    return f"isa-broker/webhook-signing-key|{subscription_id}".encode()


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def kek_of(stored: str) -> str | None:
    """The id of the key-encryption key a sealed value depends on (None for a clear one)."""
    return stored.split(":", 2)[1] if is_sealed(stored) else None


class SigningKeysAtRest:
    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    def seal(self, subscription_id: str, secret: str) -> str:
        value, headers = self.envelope.seal(secret.encode(), _aad(subscription_id))
        h = dict(headers)
        return ":".join(
            [
                PREFIX.rstrip(":"),
                h[HEADER_KEK].decode(),
                h[HEADER_DEK].decode(),
                base64.b64encode(value).decode(),
            ]
        )

    def open_(self, subscription_id: str, stored: str | None) -> str | None:
        """The key in clear; a value stored before sealing existed is returned as it is.
        Raises :class:`~.envelope.EnvelopeError` for a value that does not open (altered,
        moved from another subscription, or wrapped by a key-encryption key not held)."""
        if stored is None or not is_sealed(stored):
            return stored
        try:
            _, kid, dek, value = stored.split(":")
            sealed = base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error) as e:
            raise IntegrityFailed("malformed sealed signing key") from e
        headers = [
            (HEADER_SCHEME, SCHEME.encode()),
            (HEADER_KEK, kid.encode()),
            (HEADER_DEK, dek.encode()),
        ]
        return self.envelope.open_(sealed, headers, _aad(subscription_id)).decode()

    def current_kek(self) -> str:
        """The id of the key-encryption key new values are sealed under."""
        held = [k.kid for k in self.envelope.keks.describe() if k.current]
        return held[0] if held else self.envelope.keks.wrap(bytes(32)).kid


async def reseal_all(store: Store, keys: SigningKeysAtRest) -> int:
    """Seal every webhook signing key stored in clear, and seal again under the current
    key-encryption key every one sealed under an older one. Each value is replaced only if
    it is still the one read (a concurrent rotation wins). Returns how many were replaced."""
    rows = await store.subscription_signing_keys()
    if not rows:
        return 0
    current = keys.current_kek()
    changed = 0
    for row in rows:
        for column in ("secret", "previous_secret"):
            stored = row[column]
            if stored is None or kek_of(stored) == current:
                continue
            clear = keys.open_(row["id"], stored)
            assert clear is not None  # noqa: S101 - stored is not None
            if await store.replace_signing_key(
                row["id"], column, stored, keys.seal(row["id"], clear)
            ):
                changed += 1
    return changed
