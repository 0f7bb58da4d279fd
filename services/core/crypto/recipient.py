"""Encryption to the recipient: a delivery encrypted to the receiving agency's own public key
as a compact JWE (RFC 7516), ``ECDH-ES+A256KW`` key agreement with ``A256GCM`` content
encryption (RFC 7518 s4.6 and s5.3).

The broker seals each record it publishes on an agency's own Kafka topic
(``<prefix>.agency.<party>.v1``), and each webhook body of a subscription that asked for it,
with :func:`seal`. The agency opens it with :func:`open_record` (a Kafka record) or
:func:`open_` (a webhook body), holding the private key whose public half it registered
(``POST /v1/encryption-keys``). Nobody else can read it: not the people who run the Kafka
cluster, not an agency the record was copied to.

The protected header (authenticated as the AES-GCM associated data, so it cannot be altered)
binds the delivery to where it belongs::

    alg  ECDH-ES+A256KW           enc  A256GCM
    kid  the recipient key's id   typ  isa-broker-delivery+jwe
    cty  application/cloudevents+json
    isa_message_id   the message (CloudEvent id) the record carries
    isa_delivery_id  the delivery (one recipient, one subscription)
    isa_recipient    the party it was encrypted to
    isa_agreements   the agreements (id@version, comma separated) that permitted it

:func:`open_` refuses a token whose header names another recipient, or another message or
delivery than the record it arrived in (a misrouted or copied record is detectably out of
place, even before decryption), and checks that the decrypted CloudEvent agrees with the
header.

This module depends only on the Python standard library and ``joserfc`` so that an agency may
use it on its own: ``pip install joserfc`` and copy this one file. See
``docs/examples/agency_decrypt.py``."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.registry import HeaderParameter

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
TYP = "isa-broker-delivery+jwe"
CTY = "application/cloudevents+json"
#: the media type of a sealed record or webhook body
CONTENT_TYPE = "application/jose"
CURVES = ("P-256", "P-384", "P-521")

H_MESSAGE = "isa_message_id"
H_DELIVERY = "isa_delivery_id"
H_RECIPIENT = "isa_recipient"
H_AGREEMENTS = "isa_agreements"

#: Kafka record headers (in clear, ids only) that the protected header must agree with
RECORD_MESSAGE_HEADER = "isa_message_id"
RECORD_DELIVERY_HEADER = "isa_delivery_id"

KID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: a sealed delivery's size limit (the bodies themselves are limited far below it)
MAX_TOKEN_BYTES = 1_000_000

_REGISTRY = jwe.JWERegistry(
    header_registry={
        H_MESSAGE: HeaderParameter("isa-broker message id", "str", True),
        H_DELIVERY: HeaderParameter("isa-broker delivery id", "str", True),
        H_RECIPIENT: HeaderParameter("isa-broker recipient party", "str", True),
        H_AGREEMENTS: HeaderParameter("isa-broker agreements id@version", "str", True),
    },
    algorithms=[ALG, ENC],
)
_REGISTRY.max_ciphertext_length = MAX_TOKEN_BYTES


class DeliveryDecryptError(Exception):
    """A sealed delivery that cannot be opened with the keys given, or is not well formed."""


class UnknownKey(DeliveryDecryptError):
    """Encrypted to a key id that is not among the keys given (another agency's key, or a
    key not loaded)."""


class Misrouted(DeliveryDecryptError):
    """Well formed, but out of place: encrypted to another recipient, or bound to another
    message or delivery than the record it arrived in."""


@dataclass(frozen=True)
class Binding:
    """What a sealed delivery is bound to (the protected header's ``isa_*`` members)."""

    message_id: str
    delivery_id: str
    recipient: str
    agreements: str

    def header(self) -> dict[str, str]:
        return {
            H_MESSAGE: self.message_id,
            H_DELIVERY: self.delivery_id,
            H_RECIPIENT: self.recipient,
            H_AGREEMENTS: self.agreements,
        }


@dataclass(frozen=True)
class Opened:
    binding: Binding
    kid: str
    #: the decrypted structured CloudEvent, as JSON
    event: dict[str, Any]
    plaintext: bytes


# -- keys ---------------------------------------------------------------------------------------


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an agency's public encryption key and return it in the form the broker keeps:
    ``kty``, ``crv``, ``x``, ``y``, ``kid`` (the RFC 7638 thumbprint when none is given),
    ``use: enc`` and ``alg: ECDH-ES+A256KW``. Raises ``ValueError`` naming what is wrong."""
    if not isinstance(jwk, Mapping):
        raise ValueError("jwk must be a JSON object")
    if "d" in jwk:
        raise ValueError("jwk holds a private key (member d): register the public key only")
    if jwk.get("kty") != "EC":
        raise ValueError(f"jwk.kty must be EC (ECDH-ES), not {jwk.get('kty')!r}")
    if jwk.get("crv") not in CURVES:
        raise ValueError(f"jwk.crv must be one of {list(CURVES)}, not {jwk.get('crv')!r}")
    if jwk.get("use", "enc") != "enc":
        raise ValueError(f"jwk.use must be enc, not {jwk.get('use')!r}")
    if jwk.get("alg", ALG) != ALG:
        raise ValueError(f"jwk.alg must be {ALG}, not {jwk.get('alg')!r}")
    kid = jwk.get("kid")
    if kid is not None and (not isinstance(kid, str) or not KID.match(kid)):
        raise ValueError("jwk.kid must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    try:
        key = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk})
    except (JoseError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"jwk is not a valid EC public key on {jwk.get('crv')}: {e}") from e
    out = dict(key.as_dict(private=False))
    out.update(kid=kid or key.thumbprint(), use="enc", alg=ALG)
    return out


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: compare it out of band with the agency's own record."""
    return ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")}).thumbprint()


def generate_key(
    kid: str | None = None, crv: str = "P-256"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new key pair for an agency: ``(private JWK, public JWK)``. Keep the private one
    secret (file mode 0600, or a vault); register the public one."""
    key = ECKey.generate_key(crv, private=True)
    kid = kid or key.thumbprint()
    private = dict(key.as_dict(private=True))
    private.update(kid=kid, use="enc", alg=ALG)
    return private, public_jwk({**key.as_dict(private=False), "kid": kid})


def key_set(private_keys: Iterable[Mapping[str, Any]] | KeySet) -> KeySet:
    """A key set from private JWKs (each with its ``kid``)."""
    if isinstance(private_keys, KeySet):
        return private_keys
    keys = []
    for jwk in private_keys:
        if "d" not in jwk or not jwk.get("kid"):
            raise ValueError("each key must be a private JWK with a kid")
        keys.append(ECKey.import_key(dict(jwk)))
    return KeySet(keys)  # type: ignore[arg-type]


# -- sealing (the broker) -------------------------------------------------------------------------


def seal(body: bytes, recipient_key: Mapping[str, Any], binding: Binding) -> bytes:
    """``body`` as a compact JWE to ``recipient_key`` (a public JWK as :func:`public_jwk`
    returns it), bound to ``binding``. A fresh ephemeral key and content key every call."""
    protected = {
        "alg": ALG,
        "enc": ENC,
        "kid": recipient_key["kid"],
        "typ": TYP,
        "cty": CTY,
        **binding.header(),
    }
    key = ECKey.import_key({k: recipient_key[k] for k in ("kty", "crv", "x", "y")})
    return jwe.encrypt_compact(protected, body, key, registry=_REGISTRY).encode("ascii")


# -- opening (the agency) -------------------------------------------------------------------------


def protected_header(token: bytes | str) -> dict[str, Any]:
    """The protected header of a compact JWE, read without decrypting (not yet authentic:
    :func:`open_` authenticates it)."""
    raw = token.encode("ascii") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_BYTES:
        raise DeliveryDecryptError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = raw.split(b".")
    if len(parts) != 5:
        raise DeliveryDecryptError("not a compact JWE (five dot-separated parts)")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + b"=" * (-len(parts[0]) % 4)))
    except (binascii.Error, ValueError) as e:
        raise DeliveryDecryptError(f"protected header is not base64url JSON: {e}") from e
    if not isinstance(header, dict):
        raise DeliveryDecryptError("protected header is not a JSON object")
    return header


def open_(
    token: bytes | str,
    private_keys: Iterable[Mapping[str, Any]] | KeySet,
    *,
    recipient: str,
    message_id: str | None = None,
    delivery_id: str | None = None,
) -> Opened:
    """Decrypt a sealed delivery addressed to ``recipient`` (your own party id).

    Give ``message_id`` and ``delivery_id`` when the transport carried them (the Kafka record
    headers, or a webhook's ``webhook-id``): a token bound to other ids is refused as
    :class:`Misrouted`. Raises :class:`UnknownKey` when no key given has the token's ``kid``,
    :class:`DeliveryDecryptError` when it does not decrypt or is malformed."""
    header = protected_header(token)
    if header.get("alg") != ALG or header.get("enc") != ENC:
        raise DeliveryDecryptError(
            f"unexpected algorithms alg={header.get('alg')!r} enc={header.get('enc')!r}; "
            f"deliveries use {ALG} with {ENC}"
        )
    missing = [h for h in (H_MESSAGE, H_DELIVERY, H_RECIPIENT, H_AGREEMENTS) if h not in header]
    if missing or not isinstance(header.get("kid"), str):
        raise DeliveryDecryptError(f"protected header lacks {missing or ['kid']}")
    binding = Binding(
        header[H_MESSAGE], header[H_DELIVERY], header[H_RECIPIENT], header[H_AGREEMENTS]
    )
    if binding.recipient != recipient:
        raise Misrouted(f"encrypted to {binding.recipient!r}, not to {recipient!r}")
    if message_id is not None and binding.message_id != message_id:
        raise Misrouted(f"bound to message {binding.message_id}, arrived as {message_id}")
    if delivery_id is not None and binding.delivery_id != delivery_id:
        raise Misrouted(f"bound to delivery {binding.delivery_id}, arrived as {delivery_id}")
    keys = key_set(private_keys)
    kid = header["kid"]
    try:
        key = keys.get_by_kid(kid)
    except (JoseError, ValueError) as e:
        raise UnknownKey(f"encrypted to key {kid!r}, which is not among the keys given") from e
    try:
        plaintext = jwe.decrypt_compact(token, key, registry=_REGISTRY).plaintext
    except (JoseError, ValueError) as e:
        raise DeliveryDecryptError(f"does not decrypt with key {kid!r}: {e}") from e
    if plaintext is None:
        raise DeliveryDecryptError("empty plaintext")
    try:
        event = json.loads(plaintext)
    except ValueError as e:
        raise DeliveryDecryptError(f"plaintext is not JSON: {e}") from e
    if not isinstance(event, dict) or event.get("id") != binding.message_id:
        raise Misrouted("the CloudEvent inside does not carry the message id of the header")
    if event.get("isarecipient", recipient) != recipient:
        raise Misrouted("the CloudEvent inside is addressed to another recipient")
    return Opened(binding, kid, event, plaintext)


def open_record(
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    private_keys: Iterable[Mapping[str, Any]] | KeySet,
    *,
    recipient: str,
) -> Opened:
    """Decrypt a record consumed from your agency topic (``value`` and ``headers`` as
    aiokafka's ``ConsumerRecord`` has them), checking it against the ids in its headers."""
    found = {k: v.decode("ascii", "replace") for k, v in headers}
    return open_(
        value,
        private_keys,
        recipient=recipient,
        message_id=found.get(RECORD_MESSAGE_HEADER),
        delivery_id=found.get(RECORD_DELIVERY_HEADER),
    )
