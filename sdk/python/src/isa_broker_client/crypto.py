"""Opening sealed deliveries: the records on your agency topic, and the bodies of webhook
subscriptions made with ``"encrypt": true``.

The broker signs each event with its delivery-signing key as a compact JWS (RFC 7515,
``ES256``), then encrypts that to your registered public key as a compact JWE (RFC 7516,
``ECDH-ES+A256KW`` with ``A256GCM``, RFC 7518 s4.6 and s5.3)::

    JWE  alg ECDH-ES+A256KW   enc A256GCM   kid <your key>   typ isa-broker-delivery+jwe
         cty isa-broker-event+jws
         isa_message_id, isa_delivery_id, isa_recipient, isa_agreements   (the binding)
    JWS  alg ES256   kid <the broker's delivery-signing key>   typ isa-broker-event+jws
         cty application/cloudevents+json   the same four isa_* members
         payload: the structured CloudEvent

Encryption keeps the event confidential but says nothing of who wrote it (your public key
is no secret); the signature says the broker did, for this recipient, message and delivery.
:class:`Recipient` makes, in this order, every check of the broker's own helper
(``services/core/crypto/recipient.py`` in the broker's repository), and the shared test
vectors (``sdk/test-vectors/records.json``) keep the two in step:

1. the token is a compact JWE of at most 1 MB whose protected header is JSON, with
   ``alg``/``enc`` as above, a ``kid`` and the four binding members
   (:class:`~isa_broker_client.errors.DeliveryDecryptError` otherwise);
2. it is addressed to your party, and bound to the message and delivery the transport named
   (the Kafka headers ``isa_message_id``/``isa_delivery_id``, or ``webhook-id``), checked
   before decrypting (:class:`~isa_broker_client.errors.Misrouted`);
3. its ``kid`` is one of your private keys (:class:`~isa_broker_client.errors.UnknownKey`);
4. it decrypts (``DeliveryDecryptError``);
5. the content is a compact JWS, ``ES256``, of the broker's type, by a key the broker
   publishes (fetched again once when the ``kid`` is new), whose signature verifies, with the
   JWE's ``cty`` naming it, and whose signed binding equals the encryption header: an
   agency cannot re-encrypt to you what the broker signed for it
   (:class:`~isa_broker_client.errors.NotSignedByBroker`;
   :class:`~isa_broker_client.errors.BrokerKeysUnavailable` when the refetch failed);
6. the CloudEvent inside names the same message, recipient and delivery (``Misrouted``).

:class:`~isa_broker_client.broker_keys.BrokerKeys` holds the broker's delivery-signing
public keys: pin them (compare the thumbprints with those the broker's operators give you
out of band), and, given the URL, it fetches the set again when a delivery names a key it
does not hold, at most once per ``refresh_seconds``.

All cryptography is ``joserfc``'s. The sync and async twins (``open`` / ``aopen``...)
differ only in how the broker's keys are fetched again when one is new.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.registry import HeaderParameter

from .broker_keys import KID, SIG_ALG, BrokerKeys
from .errors import (
    DeliveryDecryptError,
    Misrouted,
    NotSignedByBroker,
    UnknownKey,
)

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
TYP = "isa-broker-delivery+jwe"
SIGNED_TYP = "isa-broker-event+jws"
CTY = "application/cloudevents+json"
CONTENT_TYPE = "application/jose"
CURVES = ("P-256", "P-384", "P-521")

H_MESSAGE = "isa_message_id"
H_DELIVERY = "isa_delivery_id"
H_RECIPIENT = "isa_recipient"
H_AGREEMENTS = "isa_agreements"
#: the Kafka record headers (ids only, in clear) the protected header must agree with
RECORD_MESSAGE_HEADER = "isa_message_id"
RECORD_DELIVERY_HEADER = "isa_delivery_id"

MAX_TOKEN_BYTES = 1_000_000

_BINDING_HEADERS = {
    H_MESSAGE: HeaderParameter("isa-broker message id", "str", True),
    H_DELIVERY: HeaderParameter("isa-broker delivery id", "str", True),
    H_RECIPIENT: HeaderParameter("isa-broker recipient party", "str", True),
    H_AGREEMENTS: HeaderParameter("isa-broker agreements id@version", "str", True),
}
_JWE_REGISTRY = jwe.JWERegistry(header_registry=dict(_BINDING_HEADERS), algorithms=[ALG, ENC])
_JWE_REGISTRY.max_ciphertext_length = MAX_TOKEN_BYTES
_JWS_REGISTRY = jws.JWSRegistry(header_registry=dict(_BINDING_HEADERS), algorithms=[SIG_ALG])
_JWS_REGISTRY.max_header_length = 2048
_JWS_REGISTRY.max_payload_length = MAX_TOKEN_BYTES


@dataclass(frozen=True)
class Binding:
    """What a sealed delivery is bound to (its protected headers' ``isa_*`` members)."""

    message_id: str
    delivery_id: str
    recipient: str
    agreements: str

    @classmethod
    def of(cls, header: Mapping[str, Any]) -> Binding:
        return cls(header[H_MESSAGE], header[H_DELIVERY], header[H_RECIPIENT], header[H_AGREEMENTS])


@dataclass(frozen=True)
class Opened:
    """A delivery that opened: every check passed."""

    binding: Binding
    #: your key it was encrypted to
    kid: str
    #: the CloudEvent (``id``, ``type``, ``subject``, ``isa*`` attributes, ``data``)
    event: dict[str, Any]
    #: the broker's delivery-signing key that signed it
    signed_by: str
    #: the compact JWS: keep it to show later that the broker sent you this event
    signed: bytes


# -- your keys -----------------------------------------------------------------------------------


def generate_key(
    kid: str | None = None, crv: str = "P-256"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new encryption key pair: ``(private JWK, public JWK)``. Keep the private one secret
    (a file of mode 0600, or a vault); register the public one
    (``BrokerClient.register_encryption_key``)."""
    if crv not in CURVES:
        raise ValueError(f"crv must be one of {list(CURVES)}")
    key = ECKey.generate_key(crv, private=True)
    kid = kid or key.thumbprint()
    if not KID.match(kid):
        raise ValueError("kid must be 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    private = {**key.as_dict(private=True), "kid": kid, "use": "enc", "alg": ALG}
    public = {**key.as_dict(private=False), "kid": kid, "use": "enc", "alg": ALG}
    return private, public


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of an EC key: compare it out of band."""
    return ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")}).thumbprint()


def key_set(private_keys: Iterable[Mapping[str, Any]] | KeySet) -> KeySet:
    """Your private keys (JWKs, each with its ``kid``) as a key set."""
    if isinstance(private_keys, KeySet):
        return private_keys
    keys = []
    for jwk in private_keys:
        if "d" not in jwk or not jwk.get("kid"):
            raise ValueError("each key must be a private JWK with a kid")
        keys.append(ECKey.import_key(dict(jwk)))
    return KeySet(keys)  # type: ignore[arg-type]  # joserfc types KeySet with every key type


# -- opening -------------------------------------------------------------------------------------


def _segment_json(segment: bytes, what: str, error: type[DeliveryDecryptError]) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as e:
        raise error(f"{what} is not base64url JSON") from e
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


def protected_header(token: bytes | str) -> dict[str, Any]:
    """The protected header of a compact JWE, read without decrypting (not yet authentic)."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_BYTES:
        raise DeliveryDecryptError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = raw.split(b".")
    if len(parts) != 5:
        raise DeliveryDecryptError("not a compact JWE (five dot-separated parts)")
    return _segment_json(parts[0], "protected header", DeliveryDecryptError)


@dataclass(frozen=True)
class _Decrypted:
    binding: Binding
    header: dict[str, Any]
    kid: str
    signed: bytes


def _signer(signed: bytes) -> str:
    """The broker key id a decrypted content names, after the checks that need no key."""
    parts = signed.split(b".")
    if len(parts) != 3 or signed[:1] in (b"{", b"["):
        raise NotSignedByBroker(
            "the decrypted content is not a JWS (three dot-separated parts): an unsigned "
            "event, which the broker never sends"
        )
    header = _segment_json(parts[0], "the signed header", NotSignedByBroker)
    if header.get("alg") != SIG_ALG:
        raise NotSignedByBroker(
            f"signed with alg {header.get('alg')!r}; the broker signs {SIG_ALG}"
        )
    if (header.get("typ"), header.get("cty")) != (SIGNED_TYP, CTY):
        raise NotSignedByBroker(
            f"signed content of typ {header.get('typ')!r} cty {header.get('cty')!r}, "
            f"not a broker event ({SIGNED_TYP}, {CTY})"
        )
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise NotSignedByBroker("the signed header names no kid")
    return kid


class Recipient:
    """You, as the recipient of sealed deliveries: your ``party`` id, every private key you
    still hold (JWKs with their ``kid``; keep old ones until their records are consumed)
    and the broker's delivery-signing keys."""

    def __init__(
        self,
        party: str,
        private_keys: Iterable[Mapping[str, Any]] | KeySet,
        broker_keys: BrokerKeys | Mapping[str, Any],
    ) -> None:
        self.party = party
        self._keys = key_set(private_keys)
        self.broker_keys = (
            broker_keys if isinstance(broker_keys, BrokerKeys) else BrokerKeys(broker_keys)
        )

    # sync --------------------------------------------------------------------------------------

    def open(
        self,
        token: bytes | str,
        *,
        message_id: str | None = None,
        delivery_id: str | None = None,
    ) -> Opened:
        """Open a sealed delivery. Give the ``message_id`` and ``delivery_id`` its transport
        carried: one bound to other ids is refused as ``Misrouted``."""
        decrypted = self._decrypt(token, message_id, delivery_id)
        kid = _signer(decrypted.signed)
        return self._verified(decrypted, kid, self.broker_keys.get(kid))

    def open_record(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Opened:
        """Open a record of your agency topic (``value`` and ``headers`` as aiokafka's
        ``ConsumerRecord`` has them)."""
        ids = _record_ids(headers)
        return self.open(value, message_id=ids[0], delivery_id=ids[1])

    def open_webhook(self, body: bytes, webhook_id: str) -> Opened:
        """Open the body of an encrypted webhook, after verifying its signature: the
        ``webhook-id`` is its delivery id."""
        return self.open(body, delivery_id=webhook_id)

    # async -------------------------------------------------------------------------------------

    async def aopen(
        self,
        token: bytes | str,
        *,
        message_id: str | None = None,
        delivery_id: str | None = None,
    ) -> Opened:
        """:meth:`open`, awaiting a fetch of the broker's keys when one is needed."""
        decrypted = self._decrypt(token, message_id, delivery_id)
        kid = _signer(decrypted.signed)
        return self._verified(decrypted, kid, await self.broker_keys.aget(kid))

    async def aopen_record(self, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Opened:
        """:meth:`open_record`, awaiting a fetch of the broker's keys when one is needed."""
        ids = _record_ids(headers)
        return await self.aopen(value, message_id=ids[0], delivery_id=ids[1])

    async def aopen_webhook(self, body: bytes, webhook_id: str) -> Opened:
        """:meth:`open_webhook`, awaiting a fetch of the broker's keys when one is needed."""
        return await self.aopen(body, delivery_id=webhook_id)

    # the checks --------------------------------------------------------------------------------

    def _decrypt(
        self, token: bytes | str, message_id: str | None, delivery_id: str | None
    ) -> _Decrypted:
        """Steps 1 to 4 of the module docstring."""
        header = protected_header(token)
        if header.get("alg") != ALG or header.get("enc") != ENC:
            raise DeliveryDecryptError(
                f"unexpected algorithms alg={header.get('alg')!r} enc={header.get('enc')!r}; "
                f"deliveries use {ALG} with {ENC}"
            )
        missing = [h for h in (H_MESSAGE, H_DELIVERY, H_RECIPIENT, H_AGREEMENTS) if h not in header]
        if missing or not isinstance(header.get("kid"), str):
            raise DeliveryDecryptError(f"protected header lacks {missing or ['kid']}")
        binding = Binding.of(header)
        if binding.recipient != self.party:
            raise Misrouted(f"encrypted to {binding.recipient!r}, not to {self.party!r}")
        if message_id is not None and binding.message_id != message_id:
            raise Misrouted(f"bound to message {binding.message_id}, arrived as {message_id}")
        if delivery_id is not None and binding.delivery_id != delivery_id:
            raise Misrouted(f"bound to delivery {binding.delivery_id}, arrived as {delivery_id}")
        kid: str = header["kid"]
        try:
            key = self._keys.get_by_kid(kid)
        except (JoseError, ValueError) as e:
            raise UnknownKey(f"encrypted to key {kid!r}, which is not among your keys") from e
        try:
            signed = jwe.decrypt_compact(token, key, registry=_JWE_REGISTRY).plaintext
        except (JoseError, ValueError) as e:
            raise DeliveryDecryptError(f"does not decrypt with key {kid!r}: {e}") from e
        if not signed:
            raise DeliveryDecryptError("empty plaintext")
        return _Decrypted(binding, header, kid, signed)

    def _verified(self, decrypted: _Decrypted, signer: str, key: ECKey | None) -> Opened:
        """Steps 5 and 6 of the module docstring."""
        if key is None:
            raise NotSignedByBroker(
                f"signed with key {signer!r}, which is not among the broker's delivery-signing keys"
            )
        try:
            obj = jws.deserialize_compact(decrypted.signed, key, registry=_JWS_REGISTRY)
        except (JoseError, ValueError) as e:
            raise NotSignedByBroker(
                f"the signature does not verify with the broker's key {signer!r}: {e}"
            ) from e
        if decrypted.header.get("cty") != SIGNED_TYP:
            raise NotSignedByBroker(
                f"the encryption header's cty is {decrypted.header.get('cty')!r}"
            )
        try:
            signed_binding = Binding.of(obj.headers())
        except KeyError as e:
            raise NotSignedByBroker("the signed header lacks the delivery binding") from e
        binding = decrypted.binding
        for name in ("message_id", "delivery_id", "recipient", "agreements"):
            ours, theirs = getattr(binding, name), getattr(signed_binding, name)
            if ours != theirs:
                raise NotSignedByBroker(
                    f"the broker signed it for {name} {theirs!r}, the encryption header says "
                    f"{ours!r}: encrypted again by someone else"
                )
        try:
            event = json.loads(obj.payload)
        except ValueError as e:
            raise DeliveryDecryptError("the signed content is not JSON") from e
        if not isinstance(event, dict) or event.get("id") != binding.message_id:
            raise Misrouted("the CloudEvent inside does not carry the message id of the header")
        if event.get("isarecipient", self.party) != self.party:
            raise Misrouted("the CloudEvent inside is addressed to another recipient")
        if event.get("isadeliveryid", binding.delivery_id) != binding.delivery_id:
            raise Misrouted("the CloudEvent inside names another delivery than the header")
        return Opened(binding, decrypted.kid, event, signer, decrypted.signed)


def _record_ids(headers: Sequence[tuple[str, bytes]]) -> tuple[str | None, str | None]:
    found = {k: v.decode("ascii", "replace") for k, v in headers}
    return found.get(RECORD_MESSAGE_HEADER), found.get(RECORD_DELIVERY_HEADER)
