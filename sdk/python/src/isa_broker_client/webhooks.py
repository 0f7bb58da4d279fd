"""Verifying the broker's webhook requests: Standard Webhooks 1.0 signatures
(https://www.standardwebhooks.com/, "Verifying webhook authenticity").

Both schemes sign ``{webhook-id}.{webhook-timestamp}.{raw body}``:

* ``v1``: HMAC-SHA256 keyed with the base64-decoded part of the ``whsec_`` secret, sent as
  ``v1,<base64>``; computed by the ``standardwebhooks`` package (``Webhook.sign``) and
  compared in constant time;
* ``v1a``: ed25519, checked with the 32-byte public key whose base64 follows ``whpk_``
  (``cryptography``: the ``standardwebhooks`` package has no asymmetric scheme).

Why not ``standardwebhooks.Webhook.verify`` itself: it reads the wall clock with a fixed
five-minute tolerance (:class:`WebhookVerifier` takes both, so that tests and replays of
captured requests run on their own clock), and a malformed header entry escapes it as a bare
``ValueError``. So the headers and the timestamp are checked here, and the library signs.

``webhook-signature`` may carry several signatures, space separated: during a rotation the
broker signs with the new key and the previous one. A request is accepted when **any**
signature verifies with **any** key held, so give the verifier every key you hold while a
rotation runs (the new one as soon as you have it, the old one until
``previous_secret_until``).

Verifying says the broker sent these bytes recently; it does not say you have not seen them:
the broker delivers at least once, so de-duplicate on ``webhook-id`` (the delivery id, the
same on every retry and replay) before acting.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from .errors import (
    WebhookKeyInvalid,
    WebhookSignatureInvalid,
    WebhookTimestampInvalid,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_KEY_PREFIX = "whsk_"  # noqa: S105 - a prefix, not a secret
PUBLIC_KEY_PREFIX = "whpk_"
#: seconds accepted between ``webhook-timestamp`` and the receiver's clock
DEFAULT_TOLERANCE = 300
#: the media type of an encrypted body (``"encrypt": true`` subscriptions)
JOSE = "application/jose"


def _b64(raw: str, what: str, size: int | None = None) -> bytes:
    try:
        value = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as e:
        raise WebhookKeyInvalid(f"{what} is not valid base64") from e
    if not value or (size is not None and len(value) != size):
        raise WebhookKeyInvalid(f"{what} must decode to {size or 'at least 1'} bytes")
    return value


@dataclass(frozen=True)
class VerifiedWebhook:
    """A request whose signature and timestamp checked out."""

    #: the delivery id: de-duplicate on it
    webhook_id: str
    timestamp: int
    #: the raw body as received: a CloudEvent (JSON), or a compact JWE when ``encrypted``
    body: bytes
    #: the body is a sealed delivery (``content-type: application/jose``): open it with
    #: :meth:`isa_broker_client.crypto.Recipient.open_webhook`
    encrypted: bool
    headers: Mapping[str, str]

    def event(self) -> dict[str, Any]:
        """The CloudEvent of a body sent in clear."""
        if self.encrypted:
            raise ValueError("the body is encrypted: open it with Recipient.open_webhook")
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("the webhook body is not a JSON object")
        return value


class WebhookVerifier:
    """Checks webhook requests against every key you hold for one subscription (or
    several): ``whsec_`` secrets for ``v1``, ``whpk_`` public keys for ``v1a``.

    ``clock`` returns Unix seconds (``time.time`` by default); a timestamp further than
    ``tolerance`` seconds from it, either way, is refused."""

    def __init__(
        self,
        keys: str | Iterable[str],
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys:
            raise WebhookKeyInvalid("give at least one whsec_ secret or whpk_ public key")
        self._hmac: list[Webhook] = []
        self._ed25519: list[Ed25519PublicKey] = []
        for key in keys:
            if key.startswith(SECRET_KEY_PREFIX):
                raise WebhookKeyInvalid(
                    "a whsk_ key is a signing key; verify v1a with the whpk_ public key"
                )
            if key.startswith(PUBLIC_KEY_PREFIX):
                raw = _b64(key.removeprefix(PUBLIC_KEY_PREFIX), "whpk_ public key", 32)
                self._ed25519.append(Ed25519PublicKey.from_public_bytes(raw))
            else:
                # bytes, not the string: given a string the library decodes leniently
                secret = _b64(key.removeprefix(SECRET_PREFIX), "whsec_ secret")
                self._hmac.append(Webhook(secret))
        self.tolerance = tolerance
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        """Check ``body`` (the raw bytes, before any parsing) and ``headers`` (any case).
        Raises :class:`~isa_broker_client.errors.WebhookTimestampInvalid` or
        :class:`~isa_broker_client.errors.WebhookSignatureInvalid`: answer ``401``."""
        lowered = {k.lower(): v for k, v in headers.items()}
        msg_id = lowered.get("webhook-id", "")
        signatures = lowered.get("webhook-signature", "")
        stamp = lowered.get("webhook-timestamp", "")
        if not msg_id or not signatures:
            raise WebhookSignatureInvalid("webhook-id or webhook-signature header missing")
        if not (stamp.isascii() and stamp.isdigit()):
            raise WebhookTimestampInvalid("webhook-timestamp is missing or not Unix seconds")
        timestamp = int(stamp)
        if abs(self._clock() - timestamp) > self.tolerance:
            raise WebhookTimestampInvalid(
                f"webhook-timestamp is more than {self.tolerance} s from this clock"
            )
        if not self._matches(msg_id, timestamp, body, signatures.split(" ")):
            raise WebhookSignatureInvalid("no webhook signature verifies with the keys held")
        content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
        return VerifiedWebhook(msg_id, timestamp, body, content_type == JOSE, lowered)

    def _matches(self, msg_id: str, timestamp: int, body: bytes, candidates: list[str]) -> bool:
        content = f"{msg_id}.{timestamp}.".encode() + body
        expected: list[bytes] = []
        if self._hmac:
            try:
                text = body.decode()
            except UnicodeDecodeError:  # v1 signs text: no v1 signature can cover these bytes
                text = None
            if text is not None:
                when = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
                expected = [w.sign(msg_id, when, text).encode() for w in self._hmac]
        for candidate in candidates:
            version, _, encoded = candidate.partition(",")
            if version == "v1":
                if any(hmac.compare_digest(candidate.encode(), e) for e in expected):
                    return True
            elif version == "v1a" and self._ed25519:
                try:
                    signature = base64.b64decode(encoded, validate=True)
                except (binascii.Error, ValueError):
                    continue
                for key in self._ed25519:
                    try:
                        key.verify(signature, content)
                    except InvalidSignature:
                        continue
                    return True
        return False
