"""Per-recipient encryption (compact JWE, ECDH-ES+A256KW with A256GCM): what the broker
seals opens only with the recipient's private key, only as the delivery it was bound to, and
registered keys are validated; plus the agency example's key generation."""

from __future__ import annotations

import base64
import importlib.util
import json
import stat
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from services.core.crypto import recipient

BINDING = recipient.Binding("m-1", "msg_d1", "eastborough-vawg", "ISA-EB-020@1.2")
EVENT = {"specversion": "1.0", "id": "m-1", "isarecipient": "eastborough-vawg", "data": {"a": 1}}


def _body(event: dict[str, Any] = EVENT) -> bytes:
    return json.dumps(event).encode()


@pytest.fixture
def pair() -> tuple[dict[str, Any], dict[str, Any]]:
    return recipient.generate_key("vawg-1")


def test_sealed_opens_with_the_recipients_key_and_header_binds_the_delivery(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = recipient.seal(_body(), public, BINDING)
    assert token.count(b".") == 4 and b"eastborough" not in token.split(b".")[3]
    header = recipient.protected_header(token)
    assert (header["alg"], header["enc"], header["kid"]) == ("ECDH-ES+A256KW", "A256GCM", "vawg-1")
    opened = recipient.open_(
        token, [private], recipient="eastborough-vawg", message_id="m-1", delivery_id="msg_d1"
    )
    assert opened.binding == BINDING and opened.event == EVENT and opened.kid == "vawg-1"
    # each seal uses a fresh ephemeral key: the same body never gives the same token
    assert recipient.seal(_body(), public, BINDING) != token


def test_another_agencys_key_another_recipient_or_other_ids_are_refused(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    other, _ = recipient.generate_key("housing-1")
    token = recipient.seal(_body(), public, BINDING)
    with pytest.raises(recipient.UnknownKey):
        recipient.open_(token, [other], recipient="eastborough-vawg")
    with pytest.raises(recipient.DeliveryDecryptError, match="does not decrypt"):
        recipient.open_(token, [{**other, "kid": "vawg-1"}], recipient="eastborough-vawg")
    with pytest.raises(recipient.Misrouted, match="not to 'eastborough-housing'"):
        recipient.open_(token, [private], recipient="eastborough-housing")
    with pytest.raises(recipient.Misrouted, match="bound to message"):
        recipient.open_(token, [private], recipient="eastborough-vawg", message_id="m-2")
    headers = [("isa_delivery_id", b"msg_other"), ("isa_message_id", b"m-1")]
    with pytest.raises(recipient.Misrouted, match="bound to delivery"):
        recipient.open_record(token, headers, [private], recipient="eastborough-vawg")


def test_an_altered_header_or_ciphertext_does_not_open(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = recipient.seal(_body(), public, BINDING)
    parts = token.split(b".")
    header = recipient.protected_header(token)
    header["isa_agreements"] = "ISA-EB-010@2.1"  # claim another agreement
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=")
    with pytest.raises(recipient.DeliveryDecryptError):
        recipient.open_(b".".join([forged, *parts[1:]]), [private], recipient="eastborough-vawg")
    ciphertext = bytearray(parts[3])
    ciphertext[0] = ord("A") if ciphertext[0] != ord("A") else ord("B")
    with pytest.raises(recipient.DeliveryDecryptError):
        recipient.open_(
            b".".join([*parts[:3], bytes(ciphertext), parts[4]]),
            [private],
            recipient="eastborough-vawg",
        )
    with pytest.raises(recipient.DeliveryDecryptError, match="five"):
        recipient.open_(b"not.a.jwe", [private], recipient="eastborough-vawg")


def test_the_event_inside_must_agree_with_the_header(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    private, public = pair
    token = recipient.seal(_body({**EVENT, "id": "m-9"}), public, BINDING)
    with pytest.raises(recipient.Misrouted, match="message id"):
        recipient.open_(token, [private], recipient="eastborough-vawg")
    token = recipient.seal(_body({**EVENT, "isarecipient": "x"}), public, BINDING)
    with pytest.raises(recipient.Misrouted, match="another recipient"):
        recipient.open_(token, [private], recipient="eastborough-vawg")


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
    token = recipient.seal(_body(), public, BINDING)
    keys = example.load_keys([private_path])
    assert recipient.open_(token, keys, recipient="eastborough-vawg").event == EVENT
    with pytest.raises(FileExistsError):  # never overwrites a private key
        example.keygen("vawg-2026-12", tmp_path / "keys")
