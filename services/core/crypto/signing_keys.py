"""The broker's signing keys (ES256) and their rotation: the gateway's access-token signing
keys (``keys/token-signing/``), and the delivery-signing keys with which the router signs
every record and webhook body it encrypts to an agency (``keys/delivery-signing/``,
:mod:`.recipient`). Each set is published as a JWKS of its own and has its own
:class:`RotationPolicy`: the same life, with a longer grace for delivery keys.

A key's life, each step a timestamp in its ``<kid>.meta.json`` beside the private JWK:

    created ──► published in the JWKS ──► activates_at: signs new tokens (or deliveries)
            ──► retires_at (the next key activates): signs nothing more, still published
            ──► retires_at + grace: withdrawn from the JWKS, file deleted

A next key is published ``publish_ahead`` before it signs anything, so resource servers that
cache the JWKS (RFC 7517) know it before they meet a token signed with it, and the old key stays
published for the grace: until every token it signed has expired (token lifetime plus leeway),
or, for a delivery-signing key, for as long as an agency may still read a record it signed
(``delivery_signing_key_grace_days``). Rotation happens when the active key is
``max_age`` old (checked whenever a key is needed), or on demand (``isa-broker keys rotate
[--delivery]``, ``POST /v1/admin/signing-keys/rotate``,
``POST /v1/admin/delivery-signing-keys/rotate``). Several processes sharing a data directory
rotate once: rotation takes an exclusive lock file and looks again before writing."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from joserfc.jwk import ECKey, KeySet

if TYPE_CHECKING:
    from ..settings import Settings

TOKEN_SIGNING_ALG = "ES256"  # noqa: S105 - an algorithm name
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only (0600, folder 0700), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its ``.rotation.lock``), so that processes
    sharing a data directory rotate or create its keys once: take it, look again, write."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / ".rotation.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class SigningKey:
    key: ECKey
    created_at: dt.datetime
    activates_at: dt.datetime
    retires_at: dt.datetime | None

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def state(self, now: dt.datetime, grace: dt.timedelta) -> str:
        if now < self.activates_at:
            return "next"
        if self.retires_at is None or now < self.retires_at:
            return "active"
        if now < self.retires_at + grace:
            return "retired"
        return "expired"


@dataclass(frozen=True)
class RotationPolicy:
    max_age: dt.timedelta = dt.timedelta(days=30)
    publish_ahead: dt.timedelta = dt.timedelta(hours=1)
    #: how long a retired key stays published: for token keys the longest token lifetime
    #: plus clock skew; for delivery keys, how long a record may wait to be read
    grace: dt.timedelta = dt.timedelta(seconds=330)

    @classmethod
    def from_settings(cls, settings: Settings) -> RotationPolicy:
        return cls(
            max_age=dt.timedelta(days=settings.tokens.signing_key_max_age_days),
            publish_ahead=dt.timedelta(seconds=settings.tokens.signing_key_publish_ahead_seconds),
            grace=dt.timedelta(
                seconds=settings.tokens.access_token_ttl_seconds + settings.tokens.leeway_seconds
            ),
        )

    @classmethod
    def for_delivery_signing(cls, settings: Settings) -> RotationPolicy:
        """The delivery-signing keys': rotated like the token keys, but a retired key stays
        published ``delivery_signing_key_grace_days``, because an agency may read a record
        from its topic long after it was signed (the topic's retention)."""
        return replace(
            cls.from_settings(settings),
            grace=dt.timedelta(days=settings.tokens.delivery_signing_key_grace_days),
        )


class SigningKeys:
    """File-backed signing keys under ``<folder>``; re-read when the folder changes, so a
    rotation made by another process (the CLI) is seen within a second."""

    def __init__(self, folder: Path, policy: RotationPolicy | None = None) -> None:
        self.folder = folder
        self.policy = policy or RotationPolicy()
        self._keys: list[SigningKey] = []
        self._stamp: int | None = None
        self._checked = 0.0
        self._key_set: tuple[tuple[int | None, tuple[str, ...]], KeySet] | None = None

    # -- reading -------------------------------------------------------------------------------

    def _load(self, force: bool = False) -> list[SigningKey]:
        mono = time.monotonic()
        if not force and self._stamp is not None and mono - self._checked < 1.0:
            return self._keys
        self._checked = mono
        stamp = self.folder.stat().st_mtime_ns if self.folder.exists() else 0
        if force or stamp != self._stamp:
            self._keys = sorted(self._read_all(), key=lambda k: (k.activates_at, k.created_at))
            self._stamp = stamp
        return self._keys

    def _read_all(self) -> Iterator[SigningKey]:
        if not self.folder.exists():
            return
        for path in self.folder.glob("*.jwk.json"):
            kid = path.name.removesuffix(".jwk.json")
            key = ECKey.import_key(json.loads(path.read_text()))
            meta_path = self.folder / f"{kid}.meta.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                created = dt.datetime.fromisoformat(meta["created_at"])
                activates = dt.datetime.fromisoformat(meta["activates_at"])
                retires = meta.get("retires_at")
                yield SigningKey(
                    key, created, activates, dt.datetime.fromisoformat(retires) if retires else None
                )
            else:  # a key from before rotation existed: active since it was written
                created = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
                yield SigningKey(key, created, EPOCH, None)

    def published(self, now: dt.datetime) -> list[SigningKey]:
        """Keys in the JWKS: next, active and retired-but-not-expired."""
        self._rotate_if_due(now)
        grace = self.policy.grace
        return [k for k in self._load() if k.state(now, grace) != "expired"]

    def active(self, now: dt.datetime) -> SigningKey:
        """The key that signs now (created on first use)."""
        self._rotate_if_due(now)
        current = self._current(self._load(), now)
        if current is None:
            with self._locked():
                current = self._current(self._load(force=True), now)
                if current is None:
                    self._write(self._new_key(), now, now)
                    current = self._current(self._load(force=True), now)
        assert current is not None  # noqa: S101 - just written
        return current

    def signing_now(self, now: dt.datetime) -> SigningKey | None:
        """The key that signs at ``now`` as the files say, or None: unlike :meth:`active`, it
        neither rotates a key that is due nor makes a first one, so that looking (a metrics
        scrape) changes nothing. A key file vanishing under a concurrent rotation reads as
        no key, until the next look."""
        try:
            return self._current(self._load(), now)
        except (OSError, ValueError):
            return None

    def key_set(self, now: dt.datetime) -> KeySet:
        """The published keys' public halves. Built again only when the published keys change
        (a rotation, a key expiring, the folder re-read): every request's token is checked
        against it, and importing the keys anew each time was a measurable part of intake."""
        self.active(now)  # a JWKS is never empty
        published = self.published(now)
        stamp = (self._stamp, tuple(k.kid for k in published))
        if self._key_set is None or self._key_set[0] != stamp:
            public = KeySet([ECKey.import_key(k.key.as_dict(private=False)) for k in published])
            self._key_set = (stamp, public)
        return self._key_set[1]

    def describe(self, now: dt.datetime) -> list[dict[str, Any]]:
        grace = self.policy.grace
        return [
            {
                "kid": k.kid,
                "thumbprint": k.key.thumbprint(),
                "state": k.state(now, grace),
                "created_at": k.created_at,
                "activates_at": max(k.activates_at, k.created_at),
                "retires_at": k.retires_at,
                "withdrawn_at": k.retires_at + grace if k.retires_at else None,
            }
            for k in self.published(now)
        ]

    @staticmethod
    def _current(keys: list[SigningKey], now: dt.datetime) -> SigningKey | None:
        live = [
            k
            for k in keys
            if k.activates_at <= now and (k.retires_at is None or now < k.retires_at)
        ]
        return live[-1] if live else None

    # -- rotation ------------------------------------------------------------------------------

    def rotate(self, now: dt.datetime, publish_ahead: dt.timedelta | None = None) -> SigningKey:
        """Publish a next key now, to sign from ``now + publish_ahead``; the active key retires
        then. If a next key is already waiting, that one is returned (no double rotation)."""
        ahead = self.policy.publish_ahead if publish_ahead is None else publish_ahead
        with self._locked():
            keys = self._load(force=True)
            waiting = [k for k in keys if k.activates_at > now]
            if waiting:
                return waiting[-1]
            current = self._current(keys, now)
            activates = now + ahead
            new = self._new_key()
            if current is not None:
                self._write_meta(
                    current.key, current.created_at, current.activates_at, retires_at=activates
                )
            self._write(new, now, activates)
            self._prune(now)
            return next(k for k in self._load(force=True) if k.kid == new.kid)

    def _rotate_if_due(self, now: dt.datetime) -> None:
        keys = self._load()
        current = self._current(keys, now)
        if current is None or any(k.activates_at > now for k in keys):
            return
        if now - max(current.activates_at, current.created_at) >= self.policy.max_age:
            self.rotate(now)

    def _prune(self, now: dt.datetime) -> None:
        """Delete the files of keys withdrawn from the JWKS: nothing they signed is valid."""
        for k in self._load(force=True):
            if k.state(now, self.policy.grace) == "expired":
                for suffix in (".jwk.json", ".meta.json"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.folder / f"{k.kid}{suffix}").unlink()

    # -- files ---------------------------------------------------------------------------------

    @staticmethod
    def _new_key() -> ECKey:
        kid = uuid.uuid4().hex[:16]
        return ECKey.generate_key(
            "P-256", parameters={"kid": kid, "use": "sig", "alg": TOKEN_SIGNING_ALG}
        )

    def _write(self, key: ECKey, created: dt.datetime, activates: dt.datetime) -> None:
        # metadata first: a key file without metadata would count as active at once
        self._write_meta(key, created, activates, None)
        write_private_file(
            self.folder / f"{key.kid}.jwk.json",
            json.dumps(key.as_dict(private=True)).encode(),
        )

    def _write_meta(
        self,
        key: ECKey,
        created: dt.datetime,
        activates: dt.datetime,
        retires_at: dt.datetime | None,
    ) -> None:
        meta = {
            "created_at": created.isoformat(),
            "activates_at": activates.isoformat(),
            "retires_at": retires_at.isoformat() if retires_at else None,
        }
        write_private_file(self.folder / f"{key.kid}.meta.json", json.dumps(meta).encode())

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return folder_lock(self.folder)
