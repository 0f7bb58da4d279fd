"""Per-recipient encryption, signed by the broker (a compact JWS, ES256, inside a compact JWE,
ECDH-ES+A256KW with A256GCM): what the broker seals opens only with the recipient's private
key, only as the delivery it was bound to, and only if the broker signed it for that delivery
(forgeries encrypted to the agency's public key by anyone else are refused); the broker's
keys are pinned and refreshed; registered keys are validated; plus the agency example."""

from __future__ import annotations

import base64
import importlib.util
import json
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from joserfc import jwe, jws
from joserfc.jwk import ECKey, KeySet

from services.core.crypto import recipient

BINDING = recipient.Binding("m-1", "msg_d1", "eastborough-vawg", "ISA-EB-020@1.2")
EVENT = {"specversion": "1.0", "id": "m-1", "isarecipient": "eastborough-vawg", "data": {"a": 1}}
VAWG = "eastborough-vawg"


def _body(event: dict[str, Any] = EVENT) -> bytes:
    return json.dumps(event).encode()


def _signing_key(kid: str, crv: str = "P-256") -> ECKey:
    return ECKey.generate_key(crv, parameters={"kid": kid}, private=True)


#: the broker's delivery-signing key, and its published JWK set
BROKER = _signing_key("broker-sig-1")
JWKS = {"keys": [BROKER.as_dict(private=False)]}


def _seal(body: bytes, public: dict[str, Any], binding: recipient.Binding = BINDING) -> bytes:
    return recipient.seal(body, public, binding, signing_key=BROKER)


def _open(token: bytes, keys: Any, **kw: Any) -> recipient.Opened:
    kw.setdefault("recipient", VAWG)
    return recipient.open_(token, keys, broker_keys=JWKS, **kw)


@pytest.fixture
def pair() -> tuple[dict[str, Any], dict[str, Any]]:
    return recipient.generate_key("vawg-1")


def test_sealed_opens_with_the_recipients_key_and_header_binds_the_delivery(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = _seal(_body(), public)
    assert token.count(b".") == 4 and b"eastborough" not in token.split(b".")[3]
    header = recipient.protected_header(token)
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES+A256KW", "A256GCM", "vawg-1")
    opened = _open(token, [private], message_id="m-1", delivery_id="msg_d1")
    assert opened.binding == BINDING and opened.event == EVENT and opened.kid == "vawg-1"
    assert header["typ"] == "isa-broker-delivery+jwe" and header["cty"] == "isa-broker-event+jws"
    # inside, the JWS the broker signed, bound to the same delivery
    signed = jws.extract_compact(opened.signed)
    assert signed.headers() == {
        "alg": "ES256",
        "kid": "broker-sig-1",
        "typ": "isa-broker-event+jws",
        "cty": "application/cloudevents+json",
        **BINDING.header(),
    }
    assert signed.payload == opened.plaintext == _body() and opened.signed_by == "broker-sig-1"
    # each seal uses a fresh ephemeral key: the same body never gives the same token
    assert _seal(_body(), public) != token


def test_another_agencys_key_another_recipient_or_other_ids_are_refused(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    other, _ = recipient.generate_key("housing-1")
    token = _seal(_body(), public)
    with pytest.raises(recipient.UnknownKey):
        _open(token, [other])
    with pytest.raises(recipient.DeliveryDecryptError, match="does not decrypt"):
        _open(token, [{**other, "kid": "vawg-1"}])
    with pytest.raises(recipient.Misrouted, match="not to 'eastborough-housing'"):
        _open(token, [private], recipient="eastborough-housing")
    with pytest.raises(recipient.Misrouted, match="bound to message"):
        _open(token, [private], message_id="m-2")
    headers = [("isa_delivery_id", b"msg_other"), ("isa_message_id", b"m-1")]
    with pytest.raises(recipient.Misrouted, match="bound to delivery"):
        recipient.open_record(token, headers, [private], broker_keys=JWKS, recipient=VAWG)


def test_an_altered_header_or_ciphertext_does_not_open(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = _seal(_body(), public)
    parts = token.split(b".")
    header = recipient.protected_header(token)
    header["isa_agreements"] = "ISA-EB-010@2.1"  # claim another agreement
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=")
    with pytest.raises(recipient.DeliveryDecryptError):
        _open(b".".join([forged, *parts[1:]]), [private])
    ciphertext = bytearray(parts[3])
    ciphertext[0] = ord("A") if ciphertext[0] != ord("A") else ord("B")
    with pytest.raises(recipient.DeliveryDecryptError):
        _open(b".".join([*parts[:3], bytes(ciphertext), parts[4]]), [private])
    with pytest.raises(recipient.DeliveryDecryptError, match="five"):
        _open(b"not.a.jwe", [private])


def test_the_event_inside_must_agree_with_the_header(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = _seal(_body({**EVENT, "id": "m-9"}), public)
    with pytest.raises(recipient.Misrouted, match="message id"):
        _open(token, [private])
    token = _seal(_body({**EVENT, "isarecipient": "x"}), public)
    with pytest.raises(recipient.Misrouted, match="another recipient"):
        _open(token, [private])
    token = _seal(_body({**EVENT, "isadeliveryid": "msg_other"}), public)
    with pytest.raises(recipient.Misrouted, match="another delivery"):
        _open(token, [private])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d": "secret"}, "private key"),
        ({"kty": "RSA"}, "kty must be EC"),
        ({"crv": "secp256k1"}, "crv must be one of"),
        ({"use": "sig"}, "use must be enc"),
        ({"alg": "RSA-OAEP"}, "alg must be"),
        ({"kid": "has space"}, "kid must be"),
        ({"x": "AAAA"}, "not a valid EC public key"),
    ],
)
def test_registered_keys_are_validated_naming_the_member(
    pair: tuple[dict[str, Any], dict[str, Any]], change: dict[str, str], message: str
) -> None:
    _, public = pair
    with pytest.raises(ValueError, match=message):
        recipient.public_jwk({**public, **change})


def test_a_key_without_kid_is_named_by_its_thumbprint(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, public = pair
    bare = {k: public[k] for k in ("kty", "crv", "x", "y")}
    normalised = recipient.public_jwk(bare)
    assert normalised["kid"] == recipient.thumbprint(bare)
    assert (normalised["use"], normalised["alg"]) == ("enc", "ECDH-ES+A256KW")


# -- forgeries: encrypted to the agency's public key by someone other than the broker -----------

#: what anyone may use: the agency's public key is no secret, joserfc is public
_FORGER_JWE = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"], strict_check_header=False)
_FORGER_JWS = jws.JWSRegistry(algorithms=["ES256", "ES384"], strict_check_header=False)


def _encrypt(
    plaintext: bytes,
    public: dict[str, Any],
    binding: recipient.Binding = BINDING,
    cty: str = "isa-broker-event+jws",
) -> bytes:
    """``plaintext`` encrypted to the agency's public key with the header a broker record
    has: only the content differs from a genuine record."""
    protected = {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "kid": public["kid"],
        "typ": "isa-broker-delivery+jwe",
        "cty": cty,
        **binding.header(),
    }
    key = ECKey.import_key({k: public[k] for k in ("kty", "crv", "x", "y")})
    return jwe.encrypt_compact(protected, plaintext, key, registry=_FORGER_JWE).encode()


def _sign(body: bytes, key: ECKey, alg: str = "ES256", **header: str) -> bytes:
    protected = {
        "alg": alg,
        "kid": key.kid,
        "typ": "isa-broker-event+jws",
        "cty": "application/cloudevents+json",
        **BINDING.header(),
        **header,
    }
    return jws.serialize_compact(protected, body, key, registry=_FORGER_JWS).encode()


@pytest.mark.parametrize("cty", ["isa-broker-event+jws", "application/cloudevents+json"])
def test_an_unsigned_event_encrypted_to_the_agency_by_someone_else_is_refused(
    pair: tuple[dict[str, Any], dict[str, Any]], cty: str
) -> None:
    private, public = pair
    forged = _encrypt(_body(), public, cty=cty)
    # it is a well-formed record for the agency: it decrypts, with the broker's own header
    assert recipient.protected_header(forged)["isa_recipient"] == VAWG
    assert jwe.decrypt_compact(forged, ECKey.import_key(private), registry=_FORGER_JWE)
    with pytest.raises(recipient.NotSignedByBroker, match="not a JWS.*unsigned event"):
        _open(forged, [private], message_id="m-1", delivery_id="msg_d1")
    headers = [("isa_delivery_id", b"msg_d1"), ("isa_message_id", b"m-1")]
    with pytest.raises(recipient.NotSignedByBroker):
        recipient.open_record(forged, headers, [private], broker_keys=JWKS, recipient=VAWG)


def test_a_record_signed_by_a_key_that_is_not_the_brokers_is_refused(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    forger = _signing_key("forger-1")
    with pytest.raises(recipient.NotSignedByBroker, match="'forger-1', which is not among"):
        _open(_encrypt(_sign(_body(), forger), public), [private])
    # the broker's kid on another key: the signature does not verify
    impostor = _signing_key("broker-sig-1")
    with pytest.raises(recipient.NotSignedByBroker, match="does not verify"):
        _open(_encrypt(_sign(_body(), impostor), public), [private])
    # another algorithm, under the broker's kid
    p384 = _signing_key("broker-sig-1", "P-384")
    with pytest.raises(recipient.NotSignedByBroker, match="alg 'ES384'; the broker signs ES256"):
        _open(_encrypt(_sign(_body(), p384, "ES384"), public), [private])
    # the broker's key, but not a broker event (say, a token signed with it)
    with pytest.raises(recipient.NotSignedByBroker, match="typ 'JWT'"):
        _open(_encrypt(_sign(_body(), BROKER, typ="JWT"), public), [private])
    # control: the same construction with the broker's own key opens
    assert _open(_encrypt(_sign(_body(), BROKER), public), [private]).signed_by == "broker-sig-1"


@pytest.mark.parametrize(
    ("signed_for", "named"),
    [
        (recipient.Binding("m-1", "msg_d1", "eastborough-housing", "ISA-EB-020@1.2"), "recipient"),
        (recipient.Binding("m-1", "msg_d2", VAWG, "ISA-EB-020@1.2"), "delivery"),
        (recipient.Binding("m-1", "msg_d1", VAWG, "ISA-EB-010@2.1"), "agreements"),
    ],
)
def test_a_signed_record_encrypted_again_under_another_binding_is_refused(
    pair: tuple[dict[str, Any], dict[str, Any]], signed_for: recipient.Binding, named: str
) -> None:
    """Housing decrypts a record the broker sealed for it and encrypts the signed content
    again to VAWG's public key, with a header naming VAWG (or another delivery, or other
    agreements): the signature is the broker's, but the signed binding gives it away."""
    private, public = pair
    housing_private, housing_public = recipient.generate_key("housing-1")
    genuine = recipient.seal(_body(), housing_public, signed_for, signing_key=BROKER)
    signed = jwe.decrypt_compact(
        genuine, ECKey.import_key(housing_private), registry=_FORGER_JWE
    ).plaintext
    assert signed is not None
    forged = _encrypt(signed, public, BINDING)
    with pytest.raises(recipient.NotSignedByBroker, match=f"signed it for {named}"):
        _open(forged, [private], message_id="m-1", delivery_id="msg_d1")


# -- the broker's keys: pinned, refreshed --------------------------------------------------------


def test_pinned_broker_keys_load_only_with_the_thumbprints_checked_out_of_band(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broker.jwks.json"
    path.write_text(json.dumps(JWKS))
    thumb = BROKER.thumbprint()
    keys = recipient.BrokerKeys.from_file(path, thumbprints=[thumb])
    assert keys.thumbprints() == {"broker-sig-1": thumb}
    assert keys.get("broker-sig-1") is not None and keys.get("other") is None
    with pytest.raises(ValueError, match=r"keys \['broker-sig-1'\] have none of the thumbprints"):
        recipient.BrokerKeys.from_file(path, thumbprints=[_signing_key("x").thumbprint()])
    for bad, message in [
        ({"keys": [BROKER.as_dict(private=True)]}, "private key"),
        ({"keys": [_signing_key("k", "P-384").as_dict(private=False)]}, "not an EC P-256"),
        ({"keys": [{**BROKER.as_dict(private=False), "kid": None}]}, "needs a kid"),
        ({"keys": []}, "non-empty"),
    ]:
        with pytest.raises(ValueError, match=message):
            recipient.BrokerKeys(bad)
    # a KeySet as the gateway's KeyStore gives it works too
    assert recipient.BrokerKeys(KeySet([BROKER])).thumbprints() == {"broker-sig-1": thumb}


def test_broker_keys_are_fetched_over_https_only_unless_allowed() -> None:
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return json.dumps(JWKS).encode()

    for url in ("http://broker.example/.well-known/delivery-signing-keys.json", "file:///x"):
        with pytest.raises(ValueError, match="must be https"):
            recipient.BrokerKeys.from_url(url, fetch=fetch)
        with pytest.raises(ValueError, match="must be https"):
            recipient.BrokerKeys(JWKS, url=url)
    assert calls == []
    local = "http://127.0.0.1:8000" + recipient.BROKER_KEYS_PATH
    keys = recipient.BrokerKeys.from_url(local, allow_http=True, fetch=fetch)
    assert calls == [local] and keys.get("broker-sig-1") is not None


def test_an_unknown_kid_refreshes_the_keys_at_most_once_per_interval(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """After a rotation the record names a key the agency has not seen: the keys are fetched
    again (the broker published the key ahead of use) and the record opens; a kid still
    unknown after that is refused without asking again until the interval has passed."""
    private, public = pair
    rotated = _signing_key("broker-sig-2")
    published = {"keys": [BROKER.as_dict(private=False), rotated.as_dict(private=False)]}
    calls: list[str] = []
    now = [1000.0]

    def fetch(url: str) -> bytes:
        calls.append(url)
        return json.dumps(published).encode()

    url = "https://broker.example" + recipient.BROKER_KEYS_PATH
    keys = recipient.BrokerKeys(
        JWKS, url=url, fetch=fetch, clock=lambda: now[0], refresh_seconds=300
    )

    def open_signed_by(key: ECKey) -> recipient.Opened:
        token = recipient.seal(_body(), public, BINDING, signing_key=key)
        return recipient.open_(token, [private], broker_keys=keys, recipient=VAWG)

    assert open_signed_by(BROKER).signed_by == "broker-sig-1" and calls == []
    assert open_signed_by(rotated).signed_by == "broker-sig-2" and calls == [url]
    with pytest.raises(recipient.NotSignedByBroker, match="'forger-1', which is not among"):
        open_signed_by(_signing_key("forger-1"))
    assert calls == [url]  # refreshed a moment ago: not again
    now[0] += 301
    published["keys"] = [rotated.as_dict(private=False)]  # broker-sig-1 withdrawn
    with pytest.raises(recipient.NotSignedByBroker):
        open_signed_by(_signing_key("forger-2"))
    assert calls == [url, url]
    # what was fetched replaced what was held: the withdrawn key no longer verifies
    with pytest.raises(recipient.NotSignedByBroker, match="'broker-sig-1', which is not among"):
        open_signed_by(BROKER)


def test_a_failed_refresh_says_the_keys_are_unavailable_not_forged(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair

    def down(url: str) -> bytes:
        raise OSError("connection refused")

    keys = recipient.BrokerKeys(JWKS, url="https://broker.example/k.json", fetch=down)
    token = recipient.seal(_body(), public, BINDING, signing_key=_signing_key("broker-sig-2"))
    with pytest.raises(recipient.BrokerKeysUnavailable, match="connection refused"):
        recipient.open_(token, [private], broker_keys=keys, recipient=VAWG)
    assert not issubclass(recipient.BrokerKeysUnavailable, recipient.NotSignedByBroker)


def _example() -> ModuleType:
    path = Path(__file__).parents[3] / "docs" / "examples" / "agency_decrypt.py"
    spec = importlib.util.spec_from_file_location("agency_decrypt", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_agency_example_makes_a_private_key_file_only_its_owner_reads(tmp_path: Path) -> None:
    example = _example()
    private_path, public_path = example.keygen("vawg-2026-12", tmp_path / "keys")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    public = recipient.public_jwk(json.loads(public_path.read_text()))
    assert "d" not in json.loads(public_path.read_text())
    token = _seal(_body(), public)
    keys = example.load_keys([private_path])
    pinned = tmp_path / "broker.jwks.json"
    pinned.write_text(json.dumps(JWKS))
    broker = example.load_broker_keys(pinned, "https://isa-broker.example")
    assert broker.url == "https://isa-broker.example" + recipient.BROKER_KEYS_PATH
    assert recipient.open_(token, keys, broker_keys=broker, recipient=VAWG).event == EVENT
    with pytest.raises(FileExistsError):  # never overwrites a private key
        example.keygen("vawg-2026-12", tmp_path / "keys")
