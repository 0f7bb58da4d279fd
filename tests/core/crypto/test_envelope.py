"""Envelope encryption of one value: round trip, and every alteration refused."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from services.core.crypto.envelope import (
    HEADER_DEK,
    HEADER_KEK,
    HEADER_SCHEME,
    SCHEME,
    Envelope,
    EnvelopeError,
    IntegrityFailed,
    NotEncrypted,
    UnknownKeyId,
)
from services.core.crypto.kek import FileKeyEncryptionKeys
from services.core.kafka.encryption import TopicEncryption, record_aad

PLAIN = b'{"person":{"given_name":"Testa","family_name":"Synthetic","pnc_id":"26/000001Z"}}'
AAD = record_aad("isa.release-notice.v1", "0b9c3a52-5f0e-4f7e-9d27-2d0c8b1a0001")


@pytest.fixture
def envelope(tmp_path: Path) -> Envelope:
    return Envelope(FileKeyEncryptionKeys(tmp_path / "keys" / "kek"))


def _replace(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in headers]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_round_trip_with_fresh_key_and_nonce_per_value(envelope: Envelope) -> None:
    v1, h1 = envelope.seal(PLAIN, AAD)
    v2, h2 = envelope.seal(PLAIN, AAD)
    assert envelope.open_(v1, h1, AAD) == PLAIN
    assert envelope.open_(v2, h2, AAD) == PLAIN
    assert v1 != v2 and v1[:12] != v2[:12]  # fresh nonce
    assert dict(h1)[HEADER_DEK] != dict(h2)[HEADER_DEK]  # fresh data key
    assert dict(h1)[HEADER_SCHEME] == SCHEME.encode()
    assert dict(h1)[HEADER_KEK] == dict(h2)[HEADER_KEK]
    assert len(v1) == 12 + len(PLAIN) + 16
    assert b"Testa" not in v1 and b"26/000001Z" not in v1
    assert b"Testa" not in b"".join(v for _, v in h1)


@pytest.mark.parametrize(
    "aad",
    [
        record_aad("isa.licence-recall.v1", "0b9c3a52-5f0e-4f7e-9d27-2d0c8b1a0001"),
        record_aad("isa.release-notice.v1", "0b9c3a52-5f0e-4f7e-9d27-2d0c8b1a0002"),
        b"",
    ],
    ids=["other-topic", "other-event-id", "no-aad"],
)
def test_another_topic_or_event_id_does_not_open(envelope: Envelope, aad: bytes) -> None:
    value, headers = envelope.seal(PLAIN, AAD)
    with pytest.raises(IntegrityFailed):
        envelope.open_(value, headers, aad)


@pytest.mark.parametrize("at", [0, 11, 12, 40, -1], ids=["nonce", "nonce-end", "ct", "ct2", "tag"])
def test_tampered_value_does_not_open(envelope: Envelope, at: int) -> None:
    value, headers = envelope.seal(PLAIN, AAD)
    with pytest.raises(IntegrityFailed):
        envelope.open_(_flip(value, at % len(value)), headers, AAD)
    with pytest.raises(IntegrityFailed):
        envelope.open_(value[:-1], headers, AAD)  # truncated tag
    with pytest.raises(IntegrityFailed):
        envelope.open_(b"short", headers, AAD)


def test_tampered_or_swapped_wrapped_key_does_not_open(envelope: Envelope) -> None:
    value, headers = envelope.seal(PLAIN, AAD)
    wrapped = base64.b64decode(dict(headers)[HEADER_DEK])
    for bad in (_flip(wrapped, 3), wrapped[:-8], os.urandom(40)):
        with pytest.raises(IntegrityFailed):
            envelope.open_(value, _replace(headers, HEADER_DEK, base64.b64encode(bad)), AAD)
    with pytest.raises(IntegrityFailed):
        envelope.open_(value, _replace(headers, HEADER_DEK, b"not base64!"), AAD)
    # another record's (valid) wrapped key: a different data key, the tag fails
    _, other = envelope.seal(PLAIN, AAD)
    with pytest.raises(IntegrityFailed):
        envelope.open_(value, _replace(headers, HEADER_DEK, dict(other)[HEADER_DEK]), AAD)


def test_unknown_kid_fails_clearly(envelope: Envelope, tmp_path: Path) -> None:
    value, headers = envelope.seal(PLAIN, AAD)
    with pytest.raises(UnknownKeyId, match="kek-0000000000000000"):
        envelope.open_(value, _replace(headers, HEADER_KEK, b"kek-0000000000000000"), AAD)
    # a record sealed by another deployment (its own KEKs) names a kid this one lacks
    foreign = Envelope(FileKeyEncryptionKeys(tmp_path / "elsewhere" / "kek"))
    with pytest.raises(UnknownKeyId):
        envelope.open_(*foreign.seal(PLAIN, AAD), AAD)


def test_missing_repeated_or_unknown_scheme_headers(envelope: Envelope) -> None:
    value, headers = envelope.seal(PLAIN, AAD)
    with pytest.raises(NotEncrypted):
        envelope.open_(value, [h for h in headers if h[0] != HEADER_KEK], AAD)
    with pytest.raises(NotEncrypted):
        envelope.open_(value, [*headers, (HEADER_KEK, dict(headers)[HEADER_KEK])], AAD)
    with pytest.raises(NotEncrypted):
        envelope.open_(value, _replace(headers, HEADER_SCHEME, b"aes128cbc-v0"), AAD)
    with pytest.raises(NotEncrypted):
        envelope.open_(PLAIN, [], AAD)


def test_records_sealed_before_a_rotation_still_open(tmp_path: Path) -> None:
    keks = FileKeyEncryptionKeys(tmp_path / "kek")
    envelope = Envelope(keks)
    old_value, old_headers = envelope.seal(PLAIN, AAD)
    new_kid = keks.rotate()
    new_value, new_headers = envelope.seal(PLAIN, AAD)
    assert dict(new_headers)[HEADER_KEK] == new_kid.encode()
    assert dict(old_headers)[HEADER_KEK] != new_kid.encode()
    assert envelope.open_(old_value, old_headers, AAD) == PLAIN
    assert envelope.open_(new_value, new_headers, AAD) == PLAIN
    # once the old KEK is retired, its records no longer open (and say why)
    keks.retire(dict(old_headers)[HEADER_KEK].decode())
    with pytest.raises(UnknownKeyId):
        envelope.open_(old_value, old_headers, AAD)
    assert envelope.open_(new_value, new_headers, AAD) == PLAIN


def test_topic_encryption_binds_topic_and_ce_id(envelope: Envelope) -> None:
    on = TopicEncryption(envelope)
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"m-1"), ("ce_subject", b"psn_x")]
    value, sealed = on.seal("isa.dip-breach.v1", PLAIN, headers)
    assert on.open_("isa.dip-breach.v1", value, sealed) == (PLAIN, headers)
    with pytest.raises(EnvelopeError):
        on.open_("isa.release-notice.v1", value, sealed)
    relabelled = _replace(sealed, "ce_id", b"m-2")
    with pytest.raises(EnvelopeError):
        on.open_("isa.dip-breach.v1", value, relabelled)
    # in clear on an encrypted topic: refused; with encryption off: accepted, and records
    # sealed earlier still open
    with pytest.raises(NotEncrypted):
        on.open_("isa.dip-breach.v1", PLAIN, headers)
    off = TopicEncryption(envelope, enabled=False)
    assert off.seal("isa.dip-breach.v1", PLAIN, headers) == (PLAIN, headers)
    assert off.open_("isa.dip-breach.v1", PLAIN, headers) == (PLAIN, headers)
    assert off.open_("isa.dip-breach.v1", value, sealed) == (PLAIN, headers)
    with pytest.raises(NotEncrypted):
        on.seal("isa.dip-breach.v1", PLAIN, [("ce_specversion", b"1.0")])
