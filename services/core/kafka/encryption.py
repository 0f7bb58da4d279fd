"""Encryption of the records on the shared topics: the message-type topics
(``<prefix>.<type>.v1``, complete messages) and the dead-letter topic.

Each record's value is sealed by :class:`~services.core.crypto.envelope.Envelope`
(AES-256-GCM under a per-record data key, wrapped by the current key-encryption key) with
associated data binding the topic and the record's CloudEvent id (``ce_id``): a record
copied to another topic, or relabelled with another id, does not open. The CloudEvents
headers stay in clear (ids, type, time and the person's keyed pseudonym, never personal
data) and the three envelope headers are added. The record's ``content-type`` describes
the bytes that are there, :data:`SEALED_CONTENT_TYPE`, and the event's own content type
travels as ``isa_sealed_content_type``: a CloudEvents SDK reads a sealed record as an event
whose data is opaque bytes, rather than failing to parse it as JSON. Opening puts the
event's own content type back.

Agency topics are not handled here: they carry one recipient's projection and will be
encrypted to that recipient (JWE) with keys from the same key store."""

from __future__ import annotations

import json

from ..crypto.envelope import ENVELOPE_HEADERS, Envelope, Headers, NotEncrypted, is_sealed

#: the content type of a sealed record's value (the envelope: nonce, ciphertext and tag)
SEALED_CONTENT_TYPE = "application/vnd.isa-broker.sealed"
#: where a sealed record keeps the event's own content type
SEALED_TYPE_HEADER = "isa_sealed_content_type"


def record_aad(topic: str, event_id: str) -> bytes:
    """Associated data of a record: unambiguous (a JSON array), whatever the names hold."""
    return json.dumps([topic, event_id], separators=(",", ":")).encode()


class TopicEncryption:
    """Seals records before they are published and opens them after they are consumed.

    ``enabled`` False (debugging only, refused in production) publishes in clear; records
    that arrive sealed are still opened, so switching it either way loses nothing."""

    def __init__(self, envelope: Envelope, *, enabled: bool = True) -> None:
        self.envelope = envelope
        self.enabled = enabled

    def seal(
        self, topic: str, value: bytes, headers: list[tuple[str, bytes]]
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        if not self.enabled:
            return value, headers
        sealed, extra = self.envelope.seal(value, record_aad(topic, _event_id(headers)))
        labelled = [(SEALED_TYPE_HEADER, v) if k == "content-type" else (k, v) for k, v in headers]
        return sealed, [*labelled, ("content-type", SEALED_CONTENT_TYPE.encode()), *extra]

    def open_(
        self, topic: str, value: bytes, headers: Headers
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        """``(plaintext value, headers without the envelope's)``; raises
        :class:`~services.core.crypto.envelope.EnvelopeError` for a record that does not
        open, or that arrives in clear while encryption is on."""
        if not is_sealed(headers):
            if self.enabled:
                raise NotEncrypted("record arrived unencrypted on an encrypted topic")
            return value, list(headers)
        plaintext = self.envelope.open_(value, headers, record_aad(topic, _event_id(headers)))
        opened = []
        for k, v in headers:
            if k in ENVELOPE_HEADERS or (k == "content-type" and v == SEALED_CONTENT_TYPE.encode()):
                continue
            opened.append(("content-type", v) if k == SEALED_TYPE_HEADER else (k, v))
        return plaintext, opened


def _event_id(headers: Headers) -> str:
    ids = [v for k, v in headers if k == "ce_id"]
    if len(ids) != 1:
        raise NotEncrypted(f"a record needs one ce_id header to bind, found {len(ids)}")
    try:
        return ids[0].decode("ascii")
    except UnicodeDecodeError as e:
        raise NotEncrypted("ce_id is not ASCII") from e
