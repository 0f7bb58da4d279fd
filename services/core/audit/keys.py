"""The log-signing key: ed25519, in ``<data_dir>/keys/audit-log/<key_id>.key`` (the raw
32-byte private key, base64; mode 0600, folder 0700), created at the first checkpoint. The
key id is the first 16 hex digits of SHA-256 over the raw public key. Every key file in
the folder is trusted to verify checkpoints; the newest signs."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..crypto.signing_keys import write_private_file
from .canonical import canonical_json

FOLDER = Path("keys") / "audit-log"

#: the fields of a checkpoint its signature covers, as a canonical JSON object
SIGNED_FIELDS = ("tree_size", "root_hash", "chain_hash", "signed_at", "key_id")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def signed_bytes(checkpoint: dict[str, Any]) -> bytes:
    return canonical_json({name: checkpoint[name] for name in SIGNED_FIELDS})


def verify_signature(public_keys: dict[str, Ed25519PublicKey], checkpoint: dict[str, Any]) -> bool:
    key = public_keys.get(str(checkpoint.get("key_id")))
    if key is None:
        return False
    try:
        key.verify(bytes.fromhex(checkpoint["signature"]), signed_bytes(checkpoint))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


class LogSigningKeys:
    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / FOLDER
        self._signer: Ed25519PrivateKey | None = None

    def _read(self) -> Iterator[tuple[float, Ed25519PrivateKey]]:
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.key"):
            raw = base64.b64decode(path.read_bytes())
            yield path.stat().st_mtime, Ed25519PrivateKey.from_private_bytes(raw)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        return {key_id(k.public_key()): k.public_key() for _, k in self._read()}

    def signer(self) -> Ed25519PrivateKey:
        """The newest key, created when there is none (processes sharing the folder create
        one: creation takes a lock file and looks again). Read afresh at every call (a
        checkpoint is signed at most every few seconds), so that a key made by
        :meth:`rotate` in another process signs from the next checkpoint on."""
        with self._locked():
            keys = sorted(self._read(), key=lambda x: x[0])
            self._signer = keys[-1][1] if keys else self._create(keys)
        return self._signer

    def rotate(self) -> str:
        """Make a new key the one that signs; the older ones stay in the folder and keep
        verifying the checkpoints they signed. Returns the new key's id."""
        with self._locked():
            key = self._create(sorted(self._read(), key=lambda x: x[0]))
        return key_id(key.public_key())

    def _create(self, existing: list[tuple[float, Ed25519PrivateKey]]) -> Ed25519PrivateKey:
        """A new key file, newer than every existing one (the newest signs); under the lock."""
        key = Ed25519PrivateKey.generate()
        path = self.folder / f"{key_id(key.public_key())}.key"
        write_private_file(path, base64.b64encode(key.private_bytes_raw()))
        newest = existing[-1][0] if existing else 0.0
        if path.stat().st_mtime <= newest:  # same clock tick as the previous key
            os.utime(path, (newest + 1, newest + 1))
        return key

    def sign(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """``checkpoint`` (tree_size, root_hash, chain_hash, signed_at) with key_id and
        signature added."""
        key = self.signer()
        out = {**checkpoint, "key_id": key_id(key.public_key())}
        out["signature"] = key.sign(signed_bytes(out)).hex()
        return out

    def export_public(self) -> dict[str, str]:
        return {
            kid: base64.b64encode(raw_public(k)).decode() for kid, k in self.public_keys().items()
        }

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.folder.chmod(0o700)
        with open(self.folder / ".create.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
