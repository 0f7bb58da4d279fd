"""Standard Webhooks signatures (Standard Webhooks 1.0.0, https://www.standardwebhooks.com/,
spec/standard-webhooks.md, "Verifying webhook authenticity": "Signature scheme", "Webhook
headers (sending metadata to consumers)" and "Verifying signatures").

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``. Two schemes, told apart
by the key's prefix ("Signature scheme", table "Secret serialization"):

* ``v1``, symmetric: HMAC-SHA256 keyed with the base64-decoded secret after ``whsec_``,
  sent as ``v1,<base64 MAC>``;
* ``v1a``, asymmetric: ed25519, sent as ``v1a,<base64 64-byte signature>``. The secret key
  is ``whsk_`` + base64 of the 32-byte ed25519 seed (RFC 8032 s5.1.5 private key), the public
  key ``whpk_`` + base64 of the 32-byte public key (the reference libraries, e.g.
  ``libraries/go/webhook_asymmetric.go``, load ``whsk_`` with ``NewKeyFromSeed``).

The ``webhook-signature`` header is a space-separated list: during a secret rotation each
delivery is signed with the new key and the old one, and a receiver accepts it when any
signature verifies under the key it holds ("Webhook headers").

What is the ``standardwebhooks`` library (the specification's reference Python library) and
what is not:

* ``v1`` MACs are computed by ``standardwebhooks.webhooks.Webhook.sign``, for signing and
  for verifying. The secret is checked here first (strict base64, at least one byte) and
  handed to ``Webhook`` as bytes: given a string, ``Webhook`` decodes it leniently (it pads
  and drops characters outside the alphabet), so a mangled secret would sign instead of
  being refused. ``Webhook.sign`` takes the body as text, so a ``v1`` body must be UTF-8
  (the broker sends JSON or a compact JWE; anything else is :class:`WebhookBodyInvalid`).
* :func:`verify` does not call ``Webhook.verify``: that reads the wall clock with a fixed
  five-minute tolerance (ours takes ``now`` and ``tolerance``, so tests and the demo run on
  their own clock), and a malformed entry in the header (no comma, bad base64 padding)
  escapes it as ``ValueError`` or ``binascii.Error`` rather than its own
  ``WebhookVerificationError``. So the timestamp check and the header parsing are here, and
  each ``v1`` entry is compared with ``Webhook.sign``'s answer by ``hmac.compare_digest``
  (constant time), as ``Webhook.verify`` itself does.
* ``v1a`` (ed25519) is written here on ``cryptography``: the library has no asymmetric
  scheme.

The library's own errors never leave this module: an empty secret
(``EmptyWebhookSecretError``) becomes :class:`SigningKeyInvalid`, a failed check
:class:`AuthenticationFailed` ("webhook timestamp outside tolerance" or "no webhook
signature matched").

    IsaBrokerError
    ├── SigningKeyInvalid   500  signing_key_invalid   (also a ValueError)
    │                            (a key that is not whsec_/whsk_/whpk_ base64 of the right size)
    └── WebhookBodyInvalid  500  webhook_body_invalid  (also a ValueError)
                                 (signing a v1 body that is not UTF-8 text)
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from ..crypto.keys import new_webhook_secret
from ..errors import AuthenticationFailed, IsaBrokerError

SignatureScheme = Literal["v1", "v1a"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_KEY_PREFIX = "whsk_"  # noqa: S105 - a prefix, not a secret
PUBLIC_KEY_PREFIX = "whpk_"
ED25519_KEY_BYTES = 32

#: seconds a receiver accepts between ``webhook-timestamp`` and its own clock
DEFAULT_TOLERANCE = 300


class SigningKeyInvalid(IsaBrokerError, ValueError):
    """A signing or verifying key that is not in a Standard Webhooks serialization (or is
    used for what it cannot do: a public key cannot sign). Never names the key itself."""

    code = "signing_key_invalid"
    title = "Webhook signing key invalid"


class WebhookBodyInvalid(IsaBrokerError, ValueError):
    """A ``v1`` body that is not UTF-8: Standard Webhooks payloads are text, and the library
    signs text. The broker's own bodies (JSON, compact JWE) always are."""

    code = "webhook_body_invalid"
    title = "Webhook body invalid"


# -- keys ---------------------------------------------------------------------------------------


def new_signing_key(scheme: SignatureScheme) -> str:
    """A fresh key for ``scheme``: a ``whsec_`` secret (v1) or a ``whsk_`` ed25519 secret key
    (v1a), whose public half :func:`public_key` gives."""
    if scheme == "v1":
        return new_webhook_secret()
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SECRET_KEY_PREFIX + base64.b64encode(seed).decode()


def scheme_of(key: str) -> SignatureScheme:
    """The scheme a key signs or verifies with: ``v1a`` for ``whsk_``/``whpk_``, else ``v1``
    (a ``whsec_`` secret, or the bare base64 some libraries accept)."""
    return "v1a" if key.startswith((SECRET_KEY_PREFIX, PUBLIC_KEY_PREFIX)) else "v1"


def _b64(raw: str, what: str, size: int | None = None) -> bytes:
    try:
        value = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SigningKeyInvalid(f"{what} is not valid base64") from e
    if not value or (size is not None and len(value) != size):
        raise SigningKeyInvalid(f"{what} must decode to {size or 'at least 1'} bytes")
    return value


def _webhook(secret: str) -> Webhook:
    """The library's signer for a ``whsec_`` (or bare base64) secret, checked strictly here."""
    raw = _b64(secret.removeprefix(SECRET_PREFIX), "webhook secret")
    try:
        return Webhook(raw)
    except EmptyWebhookSecretError as e:  # _b64 refuses empty keys; kept for the boundary
        raise SigningKeyInvalid("webhook secret must decode to at least 1 bytes") from e


def _private_key(key: str) -> Ed25519PrivateKey:
    seed = _b64(key.removeprefix(SECRET_KEY_PREFIX), "whsk_ key", ED25519_KEY_BYTES)
    return Ed25519PrivateKey.from_private_bytes(seed)


def _public_key(key: str) -> Ed25519PublicKey:
    raw = _b64(key.removeprefix(PUBLIC_KEY_PREFIX), "whpk_ key", ED25519_KEY_BYTES)
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key(secret_key: str) -> str:
    """The ``whpk_`` public key of a ``whsk_`` secret key: what a v1a receiver verifies with."""
    if not secret_key.startswith(SECRET_KEY_PREFIX):
        raise SigningKeyInvalid("only a whsk_ key has a public key")
    raw = _private_key(secret_key).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def active_keys(
    current: str,
    previous: str | None,
    previous_until: dt.datetime | None,
    now: dt.datetime,
) -> list[str]:
    """The keys a delivery made at ``now`` is signed with: the current key, and the previous
    one while the rotation's overlap runs (``now`` before ``previous_until``). A naive
    ``previous_until`` (SQLite) is taken as UTC."""
    keys = [current]
    if previous and previous_until is not None:
        until = previous_until if previous_until.tzinfo else previous_until.replace(tzinfo=dt.UTC)
        if now < until and previous != current:
            keys.append(previous)
    return keys


# -- signing ------------------------------------------------------------------------------------


def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{timestamp}.".encode() + body


def _v1(webhook: Webhook, msg_id: str, timestamp: int, text: str) -> str:
    """``v1,<base64 HMAC-SHA256>`` by the library, which takes the time as a datetime."""
    return webhook.sign(msg_id, dt.datetime.fromtimestamp(timestamp, tz=dt.UTC), text)


def sign(key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,...`` for a ``whsec_`` secret or ``v1a,...`` for a ``whsk_`` key."""
    if key.startswith(PUBLIC_KEY_PREFIX):
        raise SigningKeyInvalid("a whpk_ public key verifies signatures, it cannot sign")
    if key.startswith(SECRET_KEY_PREFIX):
        signature = _private_key(key).sign(_content(msg_id, timestamp, body))
        return "v1a," + base64.b64encode(signature).decode()
    webhook = _webhook(key)
    try:
        text = body.decode()
    except UnicodeDecodeError as e:
        raise WebhookBodyInvalid("a v1 webhook body must be UTF-8 text") from e
    return _v1(webhook, msg_id, timestamp, text)


def headers(keys: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, with one signature per key (space separated)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(k, msg_id, timestamp, body) for k in keys),
    }


# -- verifying ----------------------------------------------------------------------------------


def _ed25519_matches(key: Ed25519PublicKey, content: bytes, encoded: str) -> bool:
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(signature, content)
    except InvalidSignature:
        return False
    return True


def verify(
    key: str,
    msg_id: str,
    timestamp: int,
    body: bytes,
    signature_header: str,
    now: int,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Raise :class:`AuthenticationFailed` unless the timestamp is within ``tolerance``
    seconds of ``now`` and one signature in the header verifies under ``key``: a ``whsec_``
    secret checks the ``v1`` signatures (constant-time compare), a ``whpk_`` public key the
    ``v1a`` ones. Signatures of the other scheme are ignored. Used by the demo receivers."""
    if key.startswith(SECRET_KEY_PREFIX):
        raise SigningKeyInvalid("verify v1a signatures with the whpk_ public key")
    if abs(now - timestamp) > tolerance:
        raise AuthenticationFailed("webhook timestamp outside tolerance")
    candidates = signature_header.split(" ")
    if scheme_of(key) == "v1a":
        public = _public_key(key)
        content = _content(msg_id, timestamp, body)
        for candidate in candidates:
            version, _, encoded = candidate.partition(",")
            if version == "v1a" and _ed25519_matches(public, content, encoded):
                return
    else:
        webhook = _webhook(key)
        try:
            text = body.decode()
        except UnicodeDecodeError as e:  # no v1 signature covers it (see the module docstring)
            raise AuthenticationFailed("no webhook signature matched") from e
        expected = _v1(webhook, msg_id, timestamp, text).encode()
        for candidate in candidates:
            if hmac.compare_digest(candidate.encode(), expected):
                return
    raise AuthenticationFailed("no webhook signature matched")
