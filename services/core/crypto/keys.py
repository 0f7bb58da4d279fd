"""File-backed key store. Keys live under ``<data_dir>/keys`` with mode 0600 and are created
on first use. The interface is small so that a KMS-backed store can replace it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

from ..settings import DELIVERY_SIGNING_GRACE_DAYS
from .kek import FileKeyEncryptionKeys, KeyEncryptionKeys
from .signing_keys import RotationPolicy, SigningKeys, write_private_file

#: a retired delivery-signing key stays published this long unless the settings say otherwise
DELIVERY_SIGNING_GRACE = dt.timedelta(days=DELIVERY_SIGNING_GRACE_DAYS)


@dataclass(frozen=True)
class SigningKeyAge:
    """How old the key that signs now is, beside the policy that rotates it, in seconds:
    what the metrics report of a signing key set. Never the key, its kid or its thumbprint.

    ``age_seconds`` is measured as rotation measures it (since the key began to sign), and is
    ``None`` while the set has no key yet (none is made on first use until then)."""

    age_seconds: float | None
    max_age_seconds: float
    publish_ahead_seconds: float


def _signing_now_age(keys: SigningKeys, now: dt.datetime) -> SigningKeyAge:
    """Read the key files only (:meth:`SigningKeys.signing_now`): looking rotates nothing."""
    current = keys.signing_now(now)
    age = None
    if current is not None:
        age = max(0.0, (now - max(current.activates_at, current.created_at)).total_seconds())
    return SigningKeyAge(
        age, keys.policy.max_age.total_seconds(), keys.policy.publish_ahead.total_seconds()
    )


class KeyStore:
    """The gateway's token-signing keys and the router's delivery-signing keys (ES256, each
    rotated under its own policy: see :mod:`.signing_keys`), the pseudonymisation key, and the
    key-encryption keys of the Kafka topics' envelope encryption (:mod:`.kek`; files under
    ``keys/kek/`` unless a KMS-backed ``kek`` is given).

    The gateway publishes the delivery-signing keys that the router signs with, so both read
    the same ``keys/delivery-signing/`` folder (as they share ``keys/kek/``)."""

    def __init__(
        self,
        data_dir: Path,
        rotation: RotationPolicy | None = None,
        kek: KeyEncryptionKeys | None = None,
        delivery_rotation: RotationPolicy | None = None,
    ) -> None:
        self.root = data_dir / "keys"
        self.signing = SigningKeys(self.root / "token-signing", rotation)
        if delivery_rotation is None:
            delivery_rotation = replace(rotation or RotationPolicy(), grace=DELIVERY_SIGNING_GRACE)
        self.delivery_signing = SigningKeys(self.root / "delivery-signing", delivery_rotation)
        self.kek: KeyEncryptionKeys = kek or FileKeyEncryptionKeys(self.root / "kek")
        self._pseudonym_key: bytes | None = None
        self._root_ready = False

    # -- token signing -------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        """The keys folder exists, private (once per process: it is on the delivery path)."""
        if self._root_ready:
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)  # mkdir's mode applies only to a folder it creates
        self._root_ready = True

    def signing_key(self, now: dt.datetime | None = None) -> ECKey:
        """The key that signs access tokens now."""
        self._ensure_root()
        return self.signing.active(now or dt.datetime.now(dt.UTC)).key

    def public_keys(self, now: dt.datetime | None = None) -> KeySet:
        """Every key a valid token may carry the kid of: active, next and recently retired."""
        return self.signing.key_set(now or dt.datetime.now(dt.UTC))

    def jwks(self, now: dt.datetime | None = None) -> dict[str, Any]:
        return dict(self.public_keys(now).as_dict(private=False))

    # -- delivery signing ----------------------------------------------------------------------

    def delivery_signing_key(self, now: dt.datetime | None = None) -> ECKey:
        """The key that signs the records and webhook bodies encrypted to agencies now."""
        self._ensure_root()
        return self.delivery_signing.active(now or dt.datetime.now(dt.UTC)).key

    def delivery_jwks(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Every key a record still on a topic may be signed with: active, next and retired
        within the delivery grace. Published at ``/.well-known/delivery-signing-keys.json``."""
        self._ensure_root()
        keys = self.delivery_signing.key_set(now or dt.datetime.now(dt.UTC))
        return dict(keys.as_dict(private=False))

    # -- both --------------------------------------------------------------------------------

    def signing_key_ages(self, now: dt.datetime) -> dict[str, SigningKeyAge]:
        """The age of the token-signing and of the delivery-signing key that signs at ``now``,
        by ``token`` and ``delivery``, with their rotation policies: read without rotating
        or creating any key (:mod:`services.core.metrics` reports them at each scrape)."""
        return {
            "token": _signing_now_age(self.signing, now),
            "delivery": _signing_now_age(self.delivery_signing, now),
        }

    # -- pseudonyms ----------------------------------------------------------------------------

    def pseudonym_key(self) -> bytes:
        if self._pseudonym_key is None:
            path = self.root / "pseudonym.key"
            if path.exists():
                self._pseudonym_key = base64.b64decode(path.read_bytes())
            else:
                self._ensure_root()
                key = secrets.token_bytes(32)
                write_private_file(path, base64.b64encode(key))
                self._pseudonym_key = key
        return self._pseudonym_key

    def pseudonymise(self, identifier: str) -> str:
        """A keyed pseudonym (HMAC-SHA256) of a person identifier: stable, not reversible
        without the key. Used as Kafka key and in audit entries in place of the identifier."""
        digest = hmac.new(self.pseudonym_key(), identifier.encode(), hashlib.sha256).hexdigest()
        return "psn_" + digest[:32]


def new_client_secret() -> str:
    return "cs_" + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """Client secrets are 256-bit random values, so a fast hash is sufficient to store them."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
