"""File-backed key store. Keys live under ``<data_dir>/keys`` with mode 0600 and are created
on first use. The interface is small so that a KMS-backed store can replace it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet

TOKEN_SIGNING_ALG = "ES256"  # noqa: S105 - an algorithm name


def write_private_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


class KeyStore:
    """The gateway's token-signing keys (ES256) and the pseudonymisation key."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "keys"
        self._signing: ECKey | None = None
        self._pseudonym_key: bytes | None = None

    # -- token signing -------------------------------------------------------------------------

    def _ensure_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)  # mkdir's mode applies only to a folder it creates

    def signing_key(self) -> ECKey:
        if self._signing is None:
            folder = self.root / "token-signing"
            existing = sorted(folder.glob("*.jwk.json")) if folder.exists() else []
            if existing:
                self._signing = ECKey.import_key(json.loads(existing[-1].read_text()))
            else:
                self._ensure_root()
                kid = uuid.uuid4().hex[:16]
                key = ECKey.generate_key(
                    "P-256", parameters={"kid": kid, "use": "sig", "alg": TOKEN_SIGNING_ALG}
                )
                write_private_file(
                    folder / f"{kid}.jwk.json", json.dumps(key.as_dict(private=True)).encode()
                )
                self._signing = key
        return self._signing

    def public_keys(self) -> KeySet:
        return KeySet([ECKey.import_key(self.signing_key().as_dict(private=False))])

    def jwks(self) -> dict[str, Any]:
        return dict(self.public_keys().as_dict(private=False))

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
