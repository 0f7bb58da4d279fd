"""The file-backed key store."""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
import os
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey

from services.core.crypto import keys, recipient
from services.core.crypto.keys import (
    KeyStore,
    hash_secret,
    new_client_secret,
    secret_matches,
    write_private_file,
)
from services.core.crypto.signing_keys import RotationPolicy
from services.core.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_created_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert not (tmp_path / "keys").exists()
    store.signing_key()
    store.pseudonym_key()
    signing = list((tmp_path / "keys" / "token-signing").glob("*.jwk.json"))
    assert len(signing) == 1
    pseudonym = tmp_path / "keys" / "pseudonym.key"
    for path in (*signing, pseudonym):
        assert _mode(path) == 0o600, path
    assert _mode(tmp_path / "keys" / "token-signing") == 0o700
    assert _mode(tmp_path / "keys") == 0o700
    assert not list((tmp_path / "keys").rglob("*.tmp"))


def test_private_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_file(tmp_path / "a" / "b" / "secret.bin", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a" / "b" / "secret.bin") == 0o600
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert (tmp_path / "a" / "b" / "secret.bin").read_bytes() == b"x"


def test_write_private_file_replaces_existing_content(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_private_file(path, b"one")
    write_private_file(path, b"two")
    assert path.read_bytes() == b"two"
    assert _mode(path) == 0o600


def test_signing_key_file_is_a_private_es256_jwk(tmp_path: Path) -> None:
    key = KeyStore(tmp_path).signing_key()
    (path,) = (tmp_path / "keys" / "token-signing").glob("*.jwk.json")
    doc = json.loads(path.read_text())
    assert doc["kty"] == "EC"
    assert doc["crv"] == "P-256"
    assert doc["alg"] == "ES256"
    assert doc["use"] == "sig"
    assert "d" in doc
    assert path.name == f"{doc['kid']}.jwk.json"
    assert key.kid == doc["kid"]


def test_keys_are_reused_by_a_second_store(tmp_path: Path) -> None:
    first = KeyStore(tmp_path)
    kid = first.signing_key().kid
    pseudonym = first.pseudonymise("A1234BC")
    raw = first.pseudonym_key()

    second = KeyStore(tmp_path)
    assert second.signing_key().kid == kid
    assert second.signing_key().as_dict(private=True) == first.signing_key().as_dict(private=True)
    assert second.pseudonym_key() == raw
    assert second.pseudonymise("A1234BC") == pseudonym
    assert len(list((tmp_path / "keys" / "token-signing").glob("*.jwk.json"))) == 1


def test_the_key_is_cached_within_a_store(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    assert store.signing_key() is store.signing_key()
    key = store.pseudonym_key()
    (tmp_path / "keys" / "pseudonym.key").unlink()
    assert store.pseudonym_key() == key
    assert not (tmp_path / "keys" / "pseudonym.key").exists()


def test_pseudonym_key_is_32_random_bytes_base64_on_disk(tmp_path: Path) -> None:
    key = KeyStore(tmp_path).pseudonym_key()
    assert len(key) == 32
    assert base64.b64decode((tmp_path / "keys" / "pseudonym.key").read_bytes()) == key
    assert KeyStore(tmp_path / "other").pseudonym_key() != key


def test_pseudonymise_is_stable_keyed_and_opaque(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    p = store.pseudonymise("A1234BC")
    assert re.fullmatch(r"psn_[0-9a-f]{32}", p)
    assert store.pseudonymise("A1234BC") == p
    assert store.pseudonymise("A1234BD") != p
    assert "A1234BC" not in p
    expected = hmac.new(store.pseudonym_key(), b"A1234BC", "sha256").hexdigest()[:32]
    assert p == "psn_" + expected
    # Another key store, another key: the same person gets an unrelated pseudonym.
    assert KeyStore(tmp_path / "elsewhere").pseudonymise("A1234BC") != p


def test_jwks_carries_only_the_public_key(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    jwks = store.jwks()
    (key,) = jwks["keys"]
    assert key["kid"] == store.signing_key().kid
    assert key["kty"] == "EC"
    assert "d" not in key
    assert "d" not in store.public_keys().as_dict(private=False)["keys"][0]


def test_tokens_signed_with_the_key_verify_with_the_public_keys(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    key = store.signing_key()
    token = jwt.encode({"alg": "ES256", "kid": key.kid}, {"sub": "hmp-northgate"}, key)
    decoded = jwt.decode(token, KeyStore(tmp_path).public_keys())
    assert decoded.claims == {"sub": "hmp-northgate"}
    other = KeyStore(tmp_path / "other").signing_key().as_dict(private=False)
    with pytest.raises(BadSignatureError):
        jwt.decode(token, ECKey.import_key(other))


# --- delivery-signing keys ----------------------------------------------------------------


def test_delivery_signing_keys_are_their_own_set_in_their_own_folder(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    delivery, token = store.delivery_signing_key(), store.signing_key()
    assert delivery.kid != token.kid
    assert (tmp_path / "keys" / "delivery-signing" / f"{delivery.kid}.jwk.json").exists()
    assert _mode(tmp_path / "keys" / "delivery-signing" / f"{delivery.kid}.jwk.json") == 0o600
    assert [k["kid"] for k in store.delivery_jwks()["keys"]] == [delivery.kid]
    assert [k["kid"] for k in store.jwks()["keys"]] == [token.kid]
    assert all("d" not in k for k in store.delivery_jwks()["keys"])
    # a second process on the same data directory (the router beside the gateway) signs
    # with the key the first publishes
    assert KeyStore(tmp_path).delivery_signing_key().kid == delivery.kid


def test_the_delivery_grace_comes_from_the_settings() -> None:
    settings = Settings(mode="dev", delivery_signing_key_grace_days=45)
    policy = RotationPolicy.for_delivery_signing(settings)
    tokens = RotationPolicy.from_settings(settings)
    assert policy.grace == dt.timedelta(days=45)
    assert (policy.max_age, policy.publish_ahead) == (tokens.max_age, tokens.publish_ahead)
    assert Settings(mode="dev").tokens.delivery_signing_key_grace_days == 30
    with pytest.raises(ValueError, match="delivery_signing_key_grace_days"):
        Settings(mode="dev", delivery_signing_key_grace_days=0)


def test_rotation_keeps_old_records_verifiable_while_the_retired_key_is_published(
    tmp_path: Path,
) -> None:
    """A record signed before a rotation still opens, with the keys published then, until
    the delivery grace is over; then its key is withdrawn and the record no longer opens."""
    grace = dt.timedelta(days=30)
    store = KeyStore(tmp_path, delivery_rotation=RotationPolicy(grace=grace))
    private, public = recipient.generate_key("vawg-1")
    t0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)

    def record(at: dt.datetime, message_id: str) -> bytes:
        event = json.dumps({"id": message_id, "isarecipient": "eastborough-vawg"}).encode()
        binding = recipient.Binding(message_id, f"msg_{message_id}", "eastborough-vawg", "A@1")
        signing_key = store.delivery_signing_key(at)
        return recipient.seal(event, public, binding, signing_key=signing_key)

    def opens(token: bytes, at: dt.datetime) -> str:
        jwks = KeyStore(tmp_path, delivery_rotation=RotationPolicy(grace=grace)).delivery_jwks(at)
        opened = recipient.open_(token, [private], broker_keys=jwks, recipient="eastborough-vawg")
        return opened.signed_by

    old = record(t0, "m-1")
    first = store.delivery_signing_key(t0).kid
    store.delivery_signing.rotate(t0 + dt.timedelta(minutes=1), dt.timedelta(0))
    switched = t0 + dt.timedelta(minutes=2)
    new = record(switched, "m-2")
    second = store.delivery_signing_key(switched).kid
    assert second != first
    assert opens(old, switched) == first and opens(new, switched) == second
    # days after the rotation (a record read late from the topic): still verifiable
    late = switched + dt.timedelta(days=29)
    assert opens(old, late) == first
    # once the grace is over the retired key is withdrawn, and what it signed is refused
    over = t0 + dt.timedelta(minutes=1) + grace + dt.timedelta(seconds=1)
    assert opens(new, over) == second
    with pytest.raises(recipient.NotSignedByBroker, match=f"{first!r}, which is not among"):
        opens(old, over)


def test_cli_rotates_the_delivery_signing_keys_apart_and_lists_their_thumbprints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.cli import main

    monkeypatch.setenv("ISA_BROKER_DATA_DIR", str(tmp_path))
    store = KeyStore(tmp_path)
    token, first = store.signing_key().kid, store.delivery_signing_key().kid
    assert main(["keys", "rotate", "--delivery", "--publish-ahead", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    states = {line.split("\t")[0]: line.split("\t")[1] for line in lines}
    [second] = set(states) - {first}
    assert states == {first: "delivery retired", second: "delivery active"}
    thumbprints = {line.split("\t")[0]: line.split("\t")[3] for line in lines}
    published = recipient.BrokerKeys(KeyStore(tmp_path).delivery_jwks()).thumbprints()
    assert thumbprints == published
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{token}\tactive\t" in out  # the token-signing key did not rotate
    assert f"{second}\tdelivery active\t" in out and f"{first}\tdelivery retired\t" in out
    with sqlite3.connect(tmp_path / "isa-broker.db") as db:
        rows = db.execute("SELECT event, detail FROM audit WHERE event LIKE '%key_rotated'")
        [(event, detail)] = rows.fetchall()
    assert event == "delivery_signing_key_rotated" and json.loads(detail)["kid"] == second


# --- client secrets -----------------------------------------------------------------------


def test_client_secret_format_and_uniqueness() -> None:
    secrets_ = {new_client_secret() for _ in range(20)}
    assert len(secrets_) == 20
    for s in secrets_:
        assert re.fullmatch(r"cs_[A-Za-z0-9_-]{43}", s)


def test_hash_secret_is_sha256_hex() -> None:
    # FIPS 180-2 test vector for SHA-256("abc").
    assert hash_secret("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert len(hash_secret("x")) == 64
    assert hash_secret("x") != hash_secret("y")


def test_secret_matches() -> None:
    secret = new_client_secret()
    stored = hash_secret(secret)
    assert secret_matches(secret, stored) is True
    assert secret_matches(secret + "x", stored) is False
    assert secret_matches(new_client_secret(), stored) is False
    assert secret_matches(secret, stored.upper()) is False
    assert secret_matches(secret, "") is False


def test_secret_matches_uses_a_constant_time_compare(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    secret = new_client_secret()
    assert secret_matches(secret, hash_secret(secret))
    assert not secret_matches("wrong", hash_secret(secret))
    assert calls == [
        (hash_secret(secret), hash_secret(secret)),
        (hash_secret("wrong"), hash_secret(secret)),
    ]
