"""Envelope encryption of one value: AES-256-GCM under a fresh data key, the data key
wrapped by a key-encryption key (:mod:`.kek`).

For each value: a new 256-bit data key and a random 96-bit nonce (a key is used once, so the
nonce can never repeat under it); the value becomes ``nonce || ciphertext || tag``. The
caller's associated data (for a Kafka record: its topic and CloudEvent id) is authenticated
with the scheme name, so a value moved to another topic, relabelled with another id or
opened under another scheme fails. The data key is wrapped with AES key wrap (RFC 3394):
deterministic and nonce-free, so the number of data keys one KEK wraps has no birthday
bound (AES-GCM under the KEK would need a random nonce per wrap and a limit of about 2^32
wraps per KEK), and its built-in integrity check rejects an altered wrapped key. The AAD
need not cover the wrapped key: a different data key cannot open the GCM value.

Three headers travel beside the value, none of them personal data:

``isa_enc``  the scheme (``aes256gcm-env-v1``)
``isa_kek``  the id of the KEK that wrapped the data key
``isa_dek``  the wrapped data key, base64

Errors (one shape to callers, status 500 and code ``not_decryptable`` for all; the reason is
in the message for the log):

    IsaBrokerError
    └── EnvelopeError         500  not_decryptable
        ├── NotEncrypted      no envelope headers, a repeated one, or an unknown scheme
        ├── UnknownKeyId      the KEK named is not held (retired, or another deployment's)
        └── IntegrityFailed   tag, AAD, nonce or wrapped key do not verify
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import IsaBrokerError

if TYPE_CHECKING:
    from .kek import KeyEncryptionKeys

SCHEME = "aes256gcm-env-v1"
HEADER_SCHEME = "isa_enc"
HEADER_KEK = "isa_kek"
HEADER_DEK = "isa_dek"
ENVELOPE_HEADERS = frozenset({HEADER_SCHEME, HEADER_KEK, HEADER_DEK})
NONCE_BYTES = 12

Headers = Sequence[tuple[str, bytes]]


class EnvelopeError(IsaBrokerError):
    """A value that cannot be opened."""

    code = "not_decryptable"
    title = "Record cannot be decrypted"


class NotEncrypted(EnvelopeError):
    pass


class UnknownKeyId(EnvelopeError):
    pass


class IntegrityFailed(EnvelopeError):
    pass


def is_sealed(headers: Headers) -> bool:
    return any(name in ENVELOPE_HEADERS for name, _ in headers)


class Envelope:
    def __init__(self, keks: KeyEncryptionKeys) -> None:
        self.keks = keks

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
        """``(value, headers)``: the encrypted value and the three envelope headers."""
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        value = nonce + AESGCM(data_key).encrypt(nonce, plaintext, _bound(aad))
        wrapped = self.keks.wrap(data_key)
        return value, [
            (HEADER_SCHEME, SCHEME.encode()),
            (HEADER_KEK, wrapped.kid.encode()),
            (HEADER_DEK, base64.b64encode(wrapped.wrapped)),
        ]

    def open_(self, value: bytes, headers: Headers, aad: bytes) -> bytes:
        """The plaintext of a sealed ``value``, or :class:`EnvelopeError`."""
        if _one(headers, HEADER_SCHEME) != SCHEME.encode():
            raise NotEncrypted(f"{HEADER_SCHEME} is not {SCHEME}")
        try:
            kid = _one(headers, HEADER_KEK).decode("ascii")
            wrapped = base64.b64decode(_one(headers, HEADER_DEK), validate=True)
        except (UnicodeDecodeError, binascii.Error) as e:
            raise IntegrityFailed("malformed envelope headers") from e
        data_key = self.keks.unwrap(kid, wrapped)
        if len(data_key) != 32:
            raise IntegrityFailed(f"data key wrapped by {kid!r} is not 256 bits")
        if len(value) < NONCE_BYTES + 16:
            raise IntegrityFailed("value too short for an AES-GCM envelope")
        try:
            return AESGCM(data_key).decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], _bound(aad))
        except (InvalidTag, ValueError) as e:
            raise IntegrityFailed(f"value does not verify under data key wrapped by {kid!r}") from e


def _bound(aad: bytes) -> bytes:
    return SCHEME.encode() + b"\x00" + aad


def _one(headers: Headers, name: str) -> bytes:
    found = [v for k, v in headers if k == name]
    if len(found) != 1:
        raise NotEncrypted(f"expected one {name} header, found {len(found)}")
    return found[0]
