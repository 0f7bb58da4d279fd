"""Key-encryption keys (KEKs): the keys that wrap the per-record data keys of envelope
encryption (:mod:`.envelope`).

The seam is :class:`KeyEncryptionKeys`, small enough that a cloud KMS or Vault's transit
engine fits behind it (``wrap`` is KMS ``Encrypt`` of a data key under the current key,
``unwrap`` is ``Decrypt`` naming the key id, ``rotate`` creates a new key version). The file
implementation keeps one AES-256 key per file under ``<data_dir>/keys/kek/`` (mode 0600,
folder 0700, created at first use, never in the repository) and wraps with AES key wrap
(RFC 3394).

A KEK's life: created ──► current (wraps every new data key) ──► superseded by a rotation
(unwraps only; records it wrapped stay readable) ──► retired by an operator (file deleted:
records it wrapped can no longer be read, so retire only once they are past retention).

Several processes sharing the data directory agree: the folder is re-read when it changes
(looked at most once a second, and at once when a record names a key id not yet seen), and
creating or rotating takes the folder's lock file and looks again before writing."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from ..errors import Conflict
from .envelope import IntegrityFailed, UnknownKeyId
from .signing_keys import folder_lock, write_private_file

KEK_SUFFIX = ".kek.json"


@dataclass(frozen=True)
class WrappedKey:
    kid: str
    wrapped: bytes


@dataclass(frozen=True)
class KekInfo:
    kid: str
    created_at: dt.datetime
    current: bool


class KeyEncryptionKeys(Protocol):
    def wrap(self, data_key: bytes) -> WrappedKey:
        """Wrap ``data_key`` under the current KEK (created at first use)."""
        ...

    def unwrap(self, kid: str, wrapped: bytes) -> bytes:
        """The data key; :class:`UnknownKeyId` if no KEK ``kid`` is held (retired, or
        another deployment's), :class:`IntegrityFailed` if ``wrapped`` was altered."""
        ...

    def rotate(self) -> str:
        """Make a new KEK current; the previous ones keep unwrapping. Returns its id."""
        ...

    def retire(self, kid: str) -> None:
        """Delete a KEK that is not current: what it wrapped can no longer be read."""
        ...

    def describe(self) -> list[KekInfo]: ...


@dataclass(frozen=True)
class _Kek:
    kid: str
    key: bytes
    created_at: dt.datetime


class FileKeyEncryptionKeys:
    """KEKs as files under ``folder``: ``<kid>.kek.json`` holding the key (base64) and its
    creation time. The newest is current."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: dict[str, _Kek] = {}
        self._current: _Kek | None = None
        self._stamp: int | None = None
        self._checked = 0.0

    # -- the seam --------------------------------------------------------------------------------

    def wrap(self, data_key: bytes) -> WrappedKey:
        kek = self._current_kek()
        return WrappedKey(kek.kid, aes_key_wrap(kek.key, data_key))

    def unwrap(self, kid: str, wrapped: bytes) -> bytes:
        kek = self._load().get(kid)
        if kek is None:  # rotated by another process a moment ago? look now
            kek = self._load(force=True).get(kid)
        if kek is None:
            raise UnknownKeyId(f"no key-encryption key {kid!r} is held (retired or foreign)")
        try:
            return aes_key_unwrap(kek.key, wrapped)
        except (InvalidUnwrap, ValueError) as e:
            raise IntegrityFailed(f"wrapped data key does not unwrap under {kid!r}") from e

    def rotate(self, now: dt.datetime | None = None) -> str:
        with folder_lock(self.folder):
            self._prepare_folder()
            kek = self._write_new(now or dt.datetime.now(dt.UTC))
            self._load(force=True)
        return kek.kid

    def retire(self, kid: str) -> None:
        with folder_lock(self.folder):
            keys = self._load(force=True)
            if kid not in keys:
                raise UnknownKeyId(f"no key-encryption key {kid!r} is held")
            if self._current is not None and self._current.kid == kid:
                raise Conflict(f"{kid} is the current key-encryption key; rotate first")
            (self.folder / f"{kid}{KEK_SUFFIX}").unlink()
            self._load(force=True)

    def describe(self) -> list[KekInfo]:
        self._current_kek()  # a first run shows the key it created
        current = self._current.kid if self._current else None
        return [
            KekInfo(k.kid, k.created_at, k.kid == current)
            for k in sorted(self._load().values(), key=lambda k: (k.created_at, k.kid))
        ]

    # -- files ---------------------------------------------------------------------------------

    def _current_kek(self) -> _Kek:
        self._load()
        if self._current is None:
            with folder_lock(self.folder):
                self._load(force=True)
                if self._current is None:
                    self._prepare_folder()
                    self._write_new(dt.datetime.now(dt.UTC))
                    self._load(force=True)
        assert self._current is not None  # noqa: S101 - just written
        return self._current

    def _load(self, force: bool = False) -> dict[str, _Kek]:
        mono = time.monotonic()
        if not force and self._stamp is not None and mono - self._checked < 1.0:
            return self._keys
        self._checked = mono
        stamp = self.folder.stat().st_mtime_ns if self.folder.exists() else 0
        if force or stamp != self._stamp:
            self._keys = {k.kid: k for k in self._read_all()}
            newest = sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid))
            self._current = newest[-1] if newest else None
            self._stamp = stamp
        return self._keys

    def _read_all(self) -> Iterator[_Kek]:
        if not self.folder.exists():
            return
        for path in self.folder.glob(f"*{KEK_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # retired while listing
                doc = json.loads(path.read_text())
                key = base64.b64decode(doc["key"])
                if len(key) != 32:
                    raise ValueError(f"{path.name}: a key-encryption key must be 256 bits")
                yield _Kek(doc["kid"], key, dt.datetime.fromisoformat(doc["created_at"]))

    def _prepare_folder(self) -> None:
        # <data_dir>/keys and its kek/ folder: owner only, whoever creates them first
        for folder in (self.folder.parent, self.folder):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            folder.chmod(0o700)

    def _write_new(self, now: dt.datetime) -> _Kek:
        kek = _Kek("kek-" + secrets.token_hex(8), secrets.token_bytes(32), now)
        doc = {
            "kid": kek.kid,
            "created_at": now.isoformat(),
            "key": base64.b64encode(kek.key).decode(),
        }
        write_private_file(self.folder / f"{kek.kid}{KEK_SUFFIX}", json.dumps(doc).encode())
        return kek
