"""Encryption to the recipient, signed by the broker: a delivery signed with the broker's
delivery-signing key as a compact JWS (RFC 7515, ``ES256``), then encrypted to the receiving
agency's own public key as a compact JWE (RFC 7516), ``ECDH-ES+A256KW`` key agreement with
``A256GCM`` content encryption (RFC 7518 s3.4, s4.6 and s5.3).

The broker seals each record it publishes on an agency's own Kafka topic
(``<prefix>.agency.<party>.v1``), and each webhook body of a subscription that asked for it,
with :func:`seal`. The agency opens it with :func:`open_record` (a Kafka record) or
:func:`open_` (a webhook body), holding the private key whose public half it registered
(``POST /v1/encryption-keys``) and the broker's published delivery-signing public keys
(:class:`BrokerKeys`, from ``/.well-known/delivery-signing-keys.json``).

Threat model. The encryption keeps the record confidential: nobody without the agency's
private key reads it, not the people who run the Kafka cluster, not an agency the record was
copied to. It does not say who wrote it: ``ECDH-ES`` is anonymous, so anyone able to write to
the agency's topic (or to reach its webhook) could encrypt a forged "release alert" to the
agency's public key. The signature inside says that: a record opens only if the broker's
delivery-signing key signed the CloudEvent together with the delivery it belongs to. It
proves that the broker wrote this event, for this recipient, as this message and delivery,
under these agreements; it does not prove when it was sent (a record the broker signed can
be written again, as the broker itself does after a restart: de-duplicate on the delivery
id).

The signed header repeats the binding that the encryption header carries, because the
encryption alone cannot protect it from the recipient: an agency that decrypts its own record
holds a broker signature and could encrypt it again to another agency's public key, with a
header naming that agency. The signature covers the binding too, so that copy names the first
agency inside, disagrees with its own encryption header, and is refused.

The layers (compact serialisations, each header protected)::

    JWE  alg  ECDH-ES+A256KW           enc  A256GCM
         kid  the recipient key's id   typ  isa-broker-delivery+jwe
         cty  isa-broker-event+jws     (the plaintext is the JWS below)
         isa_message_id   the message (CloudEvent id) the record carries
         isa_delivery_id  the delivery (one recipient, one subscription)
         isa_recipient    the party it was encrypted to
         isa_agreements   the agreements (id@version, comma separated) that permitted it
    JWS  alg  ES256                    kid  the broker's delivery-signing key id
         typ  isa-broker-event+jws     cty  application/cloudevents+json
         isa_message_id, isa_delivery_id, isa_recipient, isa_agreements  as above
         payload: the structured CloudEvent (JSON)

:func:`open_` refuses a token whose encryption header names another recipient, or another
message or delivery than the record it arrived in (:class:`Misrouted`, before decryption);
after decryption it refuses, as :class:`NotSignedByBroker`, content that is not a JWS (an
unsigned event), a JWS of another algorithm or type, signed by a key the broker does not
publish, whose signature does not verify, or whose signed binding differs from the
encryption header; then it checks that the CloudEvent agrees with the binding.

Errors::

    Exception                        (not IsaBrokerError: this file stands alone, see below)
    └── DeliveryDecryptError         malformed, or does not decrypt with the keys given
        ├── UnknownKey               encrypted to a key id not among the agency's keys
        ├── Misrouted                bound to another recipient, message or delivery
        ├── NotSignedByBroker        not signed by the broker for this delivery
        └── BrokerKeysUnavailable    signed by a key id not yet known, and the broker's keys
                                     could not be fetched again (try the record later)

This module depends only on the Python standard library and ``joserfc`` so that an agency may
use it on its own: ``pip install joserfc`` and copy this one file (which is why it is one
module of about 600 lines, sealing, opening and the broker's keys together). See
``docs/examples/agency_decrypt.py``."""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from joserfc.registry import HeaderParameter

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
TYP = "isa-broker-delivery+jwe"
#: the signed event's media type (``application/`` omitted, RFC 7515 s4.1.10): the JWE's
#: ``cty`` and the JWS's ``typ``
SIGNED_TYP = "isa-broker-event+jws"
CTY = "application/cloudevents+json"
SIG_ALG = "ES256"
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

#: where the broker publishes its delivery-signing public keys, under its public URL
BROKER_KEYS_PATH = "/.well-known/delivery-signing-keys.json"

KID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
#: a sealed delivery's size limit (the bodies themselves are limited far below it)
MAX_TOKEN_BYTES = 1_000_000
MAX_JWKS_BYTES = 64 * 1024

_BINDING_HEADERS = {
    H_MESSAGE: HeaderParameter("isa-broker message id", "str", True),
    H_DELIVERY: HeaderParameter("isa-broker delivery id", "str", True),
    H_RECIPIENT: HeaderParameter("isa-broker recipient party", "str", True),
    H_AGREEMENTS: HeaderParameter("isa-broker agreements id@version", "str", True),
}
_REGISTRY = jwe.JWERegistry(header_registry=dict(_BINDING_HEADERS), algorithms=[ALG, ENC])
_REGISTRY.max_ciphertext_length = MAX_TOKEN_BYTES
_JWS_REGISTRY = jws.JWSRegistry(header_registry=dict(_BINDING_HEADERS), algorithms=[SIG_ALG])
_JWS_REGISTRY.max_header_length = 2048
_JWS_REGISTRY.max_payload_length = MAX_TOKEN_BYTES


class DeliveryDecryptError(Exception):
    """A sealed delivery that cannot be opened with the keys given, or is not well formed."""


class UnknownKey(DeliveryDecryptError):
    """Encrypted to a key id that is not among the keys given (another agency's key, or a
    key not loaded)."""


class Misrouted(DeliveryDecryptError):
    """Well formed, but out of place: encrypted to another recipient, or bound to another
    message or delivery than the record it arrived in."""


class NotSignedByBroker(DeliveryDecryptError):
    """Decrypts, but the broker did not sign it for this delivery: an unsigned event, another
    algorithm or type, a key the broker does not publish, a signature that does not verify,
    or a signed binding that differs from the encryption header. Treat it as forged."""


class BrokerKeysUnavailable(DeliveryDecryptError):
    """Signed with a key id not among the broker keys held, and fetching the broker's keys
    again failed: the record may be genuine; try it again later."""


@dataclass(frozen=True)
class Binding:
    """What a sealed delivery is bound to (the protected headers' ``isa_*`` members)."""

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

    @classmethod
    def of(cls, header: Mapping[str, Any]) -> Binding:
        return cls(header[H_MESSAGE], header[H_DELIVERY], header[H_RECIPIENT], header[H_AGREEMENTS])


@dataclass(frozen=True)
class Opened:
    binding: Binding
    #: the agency key it was encrypted to
    kid: str
    #: the decrypted structured CloudEvent, as JSON
    event: dict[str, Any]
    #: the CloudEvent as the broker signed it
    plaintext: bytes
    #: the broker's delivery-signing key that signed it
    signed_by: str
    #: the compact JWS: keep it to show later that the broker sent this event
    signed: bytes


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


# -- the broker's delivery-signing keys (the agency) ----------------------------------------------


def _signing_keys(jwks: Mapping[str, Any]) -> dict[str, ECKey]:
    """The broker's public signing keys of a JWK set, by kid: P-256 public keys only."""
    members = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(members, list) or not members:
        raise ValueError("a JWK set is a JSON object whose keys member is a non-empty array")
    found: dict[str, ECKey] = {}
    for jwk in members:
        if not isinstance(jwk, Mapping):
            raise ValueError("each member of keys must be a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not KID.match(kid):
            raise ValueError("each key needs a kid of 1 to 64 characters of A-Z a-z 0-9 . _ : -")
        if "d" in jwk:
            raise ValueError(f"key {kid!r} holds a private key (member d)")
        if (jwk.get("kty"), jwk.get("crv")) != ("EC", "P-256"):
            raise ValueError(f"key {kid!r} is not an EC P-256 key ({SIG_ALG})")
        try:
            found[kid] = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y", "kid")})
        except (JoseError, ValueError, TypeError, KeyError) as e:
            raise ValueError(f"key {kid!r} is not a valid EC P-256 public key: {e}") from e
    return found


def _checked_url(url: str, allow_http: bool) -> str:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise ValueError(f"the broker keys URL must be https (http only when allowed): {url}")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an error: it could leave https


def fetch_https(url: str, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> bytes:
    """GET ``url`` (no redirects followed), its certificate checked against ``context`` or the
    system's trust store. Raises ``OSError`` (``urllib.error.URLError``) on failure."""
    opener = urllib.request.build_opener(
        _NoRedirect, urllib.request.HTTPSHandler(context=context or ssl.create_default_context())
    )
    with opener.open(url, timeout=timeout) as response:
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise OSError(f"{url} answered more than {MAX_JWKS_BYTES} bytes")
    return body


class BrokerKeys:
    """The broker's delivery-signing public keys, that :func:`open_` checks signatures with.

    Pin them: save the JWK set from ``https://<broker>/.well-known/delivery-signing-keys.json``
    once, compare each key's thumbprint (:meth:`thumbprints`) with the ones the broker's
    operators give you out of band, and load the file with :meth:`from_file` (``thumbprints=``
    makes the comparison part of loading). Given ``url``, a record signed with a key id not
    yet known makes it fetch that JWK set again (https only, unless ``allow_http`` for local
    development; no redirects), at most once per ``refresh_seconds``: the broker publishes
    a next key before it signs with it, so the refresh finds it. The set fetched replaces the
    one held: a key the broker no longer publishes is no longer accepted. Without ``url`` the
    set never changes (update the file by hand, after checking the new thumbprints)."""

    def __init__(
        self,
        jwks: Mapping[str, Any] | KeySet,
        *,
        url: str | None = None,
        refresh_seconds: float = 300.0,
        allow_http: bool = False,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(jwks, KeySet):
            jwks = jwks.as_dict(private=False)
        self._keys = _signing_keys(jwks)
        self.url = _checked_url(url, allow_http) if url is not None else None
        self.refresh_seconds = refresh_seconds
        self._fetch = fetch or fetch_https
        self._clock = clock
        self._refreshed: float | None = None  # never: an unknown kid is looked for at once

    @classmethod
    def from_file(
        cls, path: str | Path, *, thumbprints: Iterable[str] | None = None, **kw: Any
    ) -> BrokerKeys:
        """The JWK set saved in ``path``. With ``thumbprints`` (RFC 7638, as the broker's
        operators give them), every key in the file must have one of them."""
        keys = cls(json.loads(Path(path).read_text()), **kw)
        if thumbprints is not None:
            expected = set(thumbprints)
            unknown = sorted(k for k, t in keys.thumbprints().items() if t not in expected)
            if unknown:
                raise ValueError(f"{path}: keys {unknown} have none of the thumbprints given")
        return keys

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        allow_http: bool = False,
        fetch: Callable[[str], bytes] | None = None,
        **kw: Any,
    ) -> BrokerKeys:
        """The JWK set fetched from ``url`` now (the broker's
        ``/.well-known/delivery-signing-keys.json``), refreshed from there."""
        fetch = fetch or fetch_https
        jwks = json.loads(fetch(_checked_url(url, allow_http)))
        keys = cls(jwks, url=url, allow_http=allow_http, fetch=fetch, **kw)
        keys._refreshed = keys._clock()
        return keys

    def thumbprints(self) -> dict[str, str]:
        """Each key's RFC 7638 SHA-256 thumbprint, by kid."""
        return {kid: key.thumbprint() for kid, key in self._keys.items()}

    def jwks(self) -> dict[str, Any]:
        """The keys held, as a JWK set (to save them)."""
        return {"keys": [dict(k.as_dict(private=False)) for k in self._keys.values()]}

    def refresh(self) -> None:
        """Fetch the JWK set from ``url`` now and hold it instead."""
        if self.url is None:
            raise ValueError("these broker keys have no URL to refresh from")
        self._refreshed = self._clock()
        self._keys = _signing_keys(json.loads(self._fetch(self.url)))

    def get(self, kid: str) -> ECKey | None:
        """The key named ``kid``; an unknown one is looked for again at ``url`` if the last
        look was ``refresh_seconds`` ago. Raises :class:`BrokerKeysUnavailable` when that
        look fails."""
        key = self._keys.get(kid)
        if key is None and self.url is not None:
            last = self._refreshed
            if last is None or self._clock() - last >= self.refresh_seconds:
                try:
                    self.refresh()
                except (OSError, ValueError) as e:
                    raise BrokerKeysUnavailable(
                        f"signed with key {kid!r}, not among the broker keys held; fetching "
                        f"them again from {self.url} failed: {e}"
                    ) from e
                key = self._keys.get(kid)
        return key


def as_broker_keys(keys: BrokerKeys | KeySet | Mapping[str, Any]) -> BrokerKeys:
    """``keys`` as :class:`BrokerKeys`: a JWK set (dict) or a joserfc ``KeySet`` is held as
    given, never refreshed."""
    return keys if isinstance(keys, BrokerKeys) else BrokerKeys(keys)


# -- sealing (the broker) -------------------------------------------------------------------------


def sign(body: bytes, binding: Binding, signing_key: ECKey) -> bytes:
    """``body`` (a structured CloudEvent) as a compact JWS signed with ``signing_key`` (the
    broker's active delivery-signing key: ES256, P-256, with a kid), bound to ``binding``."""
    kid = signing_key.kid
    if not isinstance(kid, str) or not KID.match(kid):
        raise ValueError("the delivery-signing key needs a kid")
    protected = {"alg": SIG_ALG, "kid": kid, "typ": SIGNED_TYP, "cty": CTY, **binding.header()}
    return jws.serialize_compact(protected, body, signing_key, registry=_JWS_REGISTRY).encode(
        "ascii"
    )


def seal(
    body: bytes, recipient_key: Mapping[str, Any], binding: Binding, *, signing_key: ECKey
) -> bytes:
    """``body`` signed with ``signing_key`` (:func:`sign`), then encrypted as a compact JWE to
    ``recipient_key`` (a public JWK as :func:`public_jwk` returns it); both layers bound to
    ``binding``. A fresh ephemeral key and content key every call."""
    protected = {
        "alg": ALG,
        "enc": ENC,
        "kid": recipient_key["kid"],
        "typ": TYP,
        "cty": SIGNED_TYP,
        **binding.header(),
    }
    key = ECKey.import_key({k: recipient_key[k] for k in ("kty", "crv", "x", "y")})
    signed = sign(body, binding, signing_key)
    return jwe.encrypt_compact(protected, signed, key, registry=_REGISTRY).encode("ascii")


# -- opening (the agency) -------------------------------------------------------------------------


def _segment_json(segment: bytes, what: str, error: type[DeliveryDecryptError]) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as e:
        raise error(f"{what} is not base64url JSON: {e}") from e
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


def protected_header(token: bytes | str) -> dict[str, Any]:
    """The protected header of a compact JWE, read without decrypting (not yet authentic:
    :func:`open_` authenticates it)."""
    raw = token.encode("ascii") if isinstance(token, str) else token
    if len(raw) > MAX_TOKEN_BYTES:
        raise DeliveryDecryptError(f"token is larger than {MAX_TOKEN_BYTES} bytes")
    parts = raw.split(b".")
    if len(parts) != 5:
        raise DeliveryDecryptError("not a compact JWE (five dot-separated parts)")
    return _segment_json(parts[0], "protected header", DeliveryDecryptError)


def verify(
    signed: bytes, keys: BrokerKeys | KeySet | Mapping[str, Any]
) -> tuple[Binding, bytes, str]:
    """Check that ``signed`` is a compact JWS of a CloudEvent signed by one of the broker's
    delivery-signing ``keys``: returns the signed binding, the CloudEvent bytes and the kid.
    Raises :class:`NotSignedByBroker` naming why not (:class:`BrokerKeysUnavailable` when a
    kid is unknown and the keys could not be fetched again)."""
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
    key = as_broker_keys(keys).get(kid)
    if key is None:
        raise NotSignedByBroker(
            f"signed with key {kid!r}, which is not among the broker's delivery-signing keys"
        )
    try:
        obj = jws.deserialize_compact(signed, key, registry=_JWS_REGISTRY)
    except (JoseError, ValueError) as e:
        raise NotSignedByBroker(
            f"the signature does not verify with the broker's key {kid!r}: {e}"
        ) from e
    return Binding.of(obj.headers()), obj.payload, kid


def open_(
    token: bytes | str,
    private_keys: Iterable[Mapping[str, Any]] | KeySet,
    *,
    broker_keys: BrokerKeys | KeySet | Mapping[str, Any],
    recipient: str,
    message_id: str | None = None,
    delivery_id: str | None = None,
) -> Opened:
    """Decrypt a sealed delivery addressed to ``recipient`` (your own party id) and check that
    the broker signed it, with ``broker_keys`` (:class:`BrokerKeys`, or the broker's
    delivery-signing JWK set as a dict or ``KeySet``).

    Give ``message_id`` and ``delivery_id`` when the transport carried them (the Kafka record
    headers, or a webhook's ``webhook-id``): a token bound to other ids is refused as
    :class:`Misrouted`. Raises :class:`UnknownKey` when no key given has the token's ``kid``,
    :class:`NotSignedByBroker` when it decrypts but the broker did not sign it for this
    delivery, :class:`DeliveryDecryptError` when it does not decrypt or is malformed."""
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
        signed = jwe.decrypt_compact(token, key, registry=_REGISTRY).plaintext
    except (JoseError, ValueError) as e:
        raise DeliveryDecryptError(f"does not decrypt with key {kid!r}: {e}") from e
    if not signed:
        raise DeliveryDecryptError("empty plaintext")
    # decrypted, the encryption header is authentic: now who wrote the content
    signed_binding, plaintext, signed_by = verify(signed, broker_keys)
    if header.get("cty") != SIGNED_TYP:
        raise NotSignedByBroker(f"the encryption header's cty is {header.get('cty')!r}")
    for name, ours, theirs in zip(
        ("message", "delivery", "recipient", "agreements"),
        (binding.message_id, binding.delivery_id, binding.recipient, binding.agreements),
        (
            signed_binding.message_id,
            signed_binding.delivery_id,
            signed_binding.recipient,
            signed_binding.agreements,
        ),
        strict=True,
    ):
        if ours != theirs:
            raise NotSignedByBroker(
                f"the broker signed it for {name} {theirs!r}, the encryption header says "
                f"{ours!r}: encrypted again by someone else"
            )
    try:
        event = json.loads(plaintext)
    except ValueError as e:
        raise DeliveryDecryptError(f"the signed content is not JSON: {e}") from e
    if not isinstance(event, dict) or event.get("id") != binding.message_id:
        raise Misrouted("the CloudEvent inside does not carry the message id of the header")
    if event.get("isarecipient", recipient) != recipient:
        raise Misrouted("the CloudEvent inside is addressed to another recipient")
    if event.get("isadeliveryid", binding.delivery_id) != binding.delivery_id:
        raise Misrouted("the CloudEvent inside names another delivery than the header")
    return Opened(binding, kid, event, plaintext, signed_by, signed)


def open_record(
    value: bytes,
    headers: Sequence[tuple[str, bytes]],
    private_keys: Iterable[Mapping[str, Any]] | KeySet,
    *,
    broker_keys: BrokerKeys | KeySet | Mapping[str, Any],
    recipient: str,
) -> Opened:
    """Decrypt a record consumed from your agency topic (``value`` and ``headers`` as
    aiokafka's ``ConsumerRecord`` has them), checking it against the ids in its headers and
    its signature against ``broker_keys``."""
    found = {k: v.decode("ascii", "replace") for k, v in headers}
    return open_(
        value,
        private_keys,
        broker_keys=broker_keys,
        recipient=recipient,
        message_id=found.get(RECORD_MESSAGE_HEADER),
        delivery_id=found.get(RECORD_DELIVERY_HEADER),
    )
