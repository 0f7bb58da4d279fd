"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme").

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the signature is
HMAC-SHA256 with the base64-decoded secret (after the ``whsec_`` prefix), sent as
``v1,<base64>``. Several space-separated signatures may be sent during secret rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac

from ..errors import AuthenticationFailed

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets_),
    }


def verify(
    secret: str,
    msg_id: str,
    timestamp: int,
    body: bytes,
    signature_header: str,
    now: int,
    tolerance: int = 300,
) -> None:
    """Raise :class:`AuthenticationFailed` unless one v1 signature matches and the timestamp
    is within ``tolerance`` seconds of ``now``. Used by the demo receivers."""
    if abs(now - timestamp) > tolerance:
        raise AuthenticationFailed("webhook timestamp outside tolerance")
    expected = sign(secret, msg_id, timestamp, body)
    for candidate in signature_header.split(" "):
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return
    raise AuthenticationFailed("no webhook signature matched")
