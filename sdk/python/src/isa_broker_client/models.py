"""The values the broker's API answers with, as frozen dataclasses.

Each keeps the members a program uses as typed attributes and the whole answer in ``raw``,
so that a member the broker adds later is readable before this package names it. Events
(CloudEvents, section 5 of the integrators' guide) stay plain dicts: their ``data`` is the
projection the agreements allow, whose shape differs by recipient.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: a structured CloudEvent as JSON (``id``, ``type``, ``subject``, ``isa*``, ``data``...)
Event = dict[str, Any]

MessageType = Literal["release-notice", "licence-recall", "dip-breach"]
Channel = Literal["webhook", "inbox", "kafka"]
SignatureScheme = Literal["v1", "v1a"]


def _time(value: Any) -> dt.datetime | None:
    """An RFC 3339 date-time of the broker (always with ``Z`` or an offset)."""
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def duty_ids(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The acknowledgement duties a delivered event puts on you (its ``isadutyid``
    attribute: none, one, or several comma-separated, earliest due first)."""
    value = event.get("isadutyid")
    if not isinstance(value, str):
        return ()
    return tuple(d.strip() for d in value.split(",") if d.strip())


@dataclass(frozen=True)
class RecipientShare:
    """Who will receive a published message, which fields and why (one ``recipients[]``)."""

    party: str
    fields: tuple[str, ...]
    purposes: tuple[str, ...]
    agreements: tuple[str, ...]  # id@version
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RecipientShare:
        agreements = tuple(
            f"{a.get('id')}@{a.get('version')}"
            for a in body.get("agreements") or []
            if isinstance(a, dict)
        )
        return cls(
            party=str(body["party"]),
            fields=_strs(body.get("fields")),
            purposes=_strs(body.get("purposes")),
            agreements=agreements,
            raw=dict(body),
        )


@dataclass(frozen=True)
class Accepted:
    """The broker's ``202 Accepted``: the message and its decision are stored durably.

    ``replayed`` is true when the answer is the one given to an earlier request with the
    same ``Idempotency-Key`` (nothing new was stored)."""

    id: str
    message_type: str
    lifecycle: str
    version: int
    refers_to: str | None
    recipients: tuple[RecipientShare, ...]
    warnings: tuple[str, ...]
    idempotency_key: str | None
    replayed: bool
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(
        cls, body: Mapping[str, Any], *, idempotency_key: str | None, replayed: bool
    ) -> Accepted:
        return cls(
            id=str(body["id"]),
            message_type=str(body.get("message_type", "")),
            lifecycle=str(body.get("lifecycle", "original")),
            version=int(body.get("version", 1)),
            refers_to=body.get("refers_to"),
            recipients=tuple(
                RecipientShare.from_json(r) for r in body.get("recipients") or [] if r
            ),
            warnings=_strs(body.get("warnings")),
            idempotency_key=idempotency_key,
            replayed=replayed,
            raw=dict(body),
        )


@dataclass(frozen=True, repr=False)
class KafkaCredential:
    """Your party's own Kafka user (SCRAM over SASL_SSL), shown once: store it as a secret."""

    username: str
    password: str
    mechanism: str
    topic: str
    group_prefix: str

    def __repr__(self) -> str:  # never the password
        return f"KafkaCredential(username={self.username!r}, topic={self.topic!r})"

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> KafkaCredential:
        return cls(
            username=str(body["username"]),
            password=str(body["password"]),
            mechanism=str(body["mechanism"]),
            topic=str(body["topic"]),
            group_prefix=str(body["group_prefix"]),
        )


@dataclass(frozen=True)
class Subscription:
    """A subscription. ``secret`` (a ``v1`` webhook's ``whsec_`` key) and
    ``kafka_credential`` are present only in the answers that show them once: creation and
    secret rotation."""

    id: str
    message_types: tuple[str, ...]
    channel: str
    status: str
    status_reason: str | None
    created_at: dt.datetime | None
    webhook_url: str | None
    kafka_topic: str | None
    signature_scheme: str | None
    public_key: str | None
    previous_secret_until: dt.datetime | None
    filters: dict[str, Any] | None
    encrypt: bool
    secret: str | None = field(default=None, repr=False)
    kafka_credential: KafkaCredential | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Subscription:
        webhook = body.get("webhook")
        credential = body.get("kafka_credential")
        return cls(
            id=str(body["id"]),
            message_types=_strs(body.get("message_types")),
            channel=str(body.get("channel", "webhook")),
            status=str(body.get("status", "active")),
            status_reason=body.get("status_reason"),
            created_at=_time(body.get("created_at")),
            webhook_url=webhook.get("url") if isinstance(webhook, dict) else None,
            kafka_topic=body.get("kafka_topic"),
            signature_scheme=body.get("signature_scheme"),
            public_key=body.get("public_key"),
            previous_secret_until=_time(body.get("previous_secret_until")),
            filters=body.get("filters"),
            encrypt=bool(body.get("encrypt", False)),
            secret=body.get("secret"),
            kafka_credential=(
                KafkaCredential.from_json(credential) if isinstance(credential, dict) else None
            ),
            raw=dict(body),
        )

    @property
    def verifying_key(self) -> str | None:
        """What a webhook receiver verifies with: the ``whsec_`` secret (v1, when shown) or
        the ``whpk_`` public key (v1a)."""
        return self.public_key if self.signature_scheme == "v1a" else self.secret


@dataclass(frozen=True)
class EncryptionKey:
    """One of your party's registered public encryption keys."""

    kid: str
    thumbprint: str
    jwk: dict[str, Any]
    current: bool
    created_at: dt.datetime | None
    created_by: str | None
    retired_at: dt.datetime | None
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EncryptionKey:
        return cls(
            kid=str(body["kid"]),
            thumbprint=str(body.get("thumbprint", "")),
            jwk=dict(body.get("jwk") or {}),
            current=bool(body.get("current", False)),
            created_at=_time(body.get("created_at")),
            created_by=body.get("created_by"),
            retired_at=_time(body.get("retired_at")),
            raw=dict(body),
        )


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: ``status_code`` is ``None`` when no HTTP answer came, and for
    inbox and Kafka deliveries."""

    at: dt.datetime | None
    status_code: int | None
    error: str | None
    duration_ms: float | None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Attempt:
        return cls(
            at=_time(body.get("at")),
            status_code=body.get("status_code"),
            error=body.get("error"),
            duration_ms=body.get("duration_ms"),
        )


@dataclass(frozen=True)
class Delivery:
    """A delivery of one message to your party through one subscription (or none).

    ``id`` is what a webhook carries as ``webhook-id``, the inbox as ``delivery_id`` and a
    Kafka record as ``isa_delivery_id``. ``history`` is filled by ``get_delivery`` and the
    dead-letter list."""

    id: str
    message_id: str
    message_type: str
    subscription_id: str | None
    channel: str
    status: str
    fields: tuple[str, ...]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    history: tuple[Attempt, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Delivery:
        return cls(
            id=str(body["id"]),
            message_id=str(body.get("message_id", "")),
            message_type=str(body.get("message_type", "")),
            subscription_id=body.get("subscription_id"),
            channel=str(body.get("channel", "")),
            status=str(body.get("status", "")),
            fields=_strs(body.get("fields")),
            attempts=int(body.get("attempts") or 0),
            last_status_code=body.get("last_status_code"),
            last_error=body.get("last_error"),
            next_attempt_at=_time(body.get("next_attempt_at")),
            created_at=_time(body.get("created_at")),
            updated_at=_time(body.get("updated_at")),
            history=tuple(Attempt.from_json(a) for a in body.get("history") or []),
            raw=dict(body),
        )


@dataclass(frozen=True)
class Duty:
    """An acknowledgement duty (``GET /v1/duties``)."""

    id: str
    message_id: str
    recipient: str
    agreement: str
    flow: str
    due_at: dt.datetime | None
    status: str
    overdue: bool
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    action: str | None
    late: bool | None
    allowed_actions: tuple[str, ...]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Duty:
        return cls(
            id=str(body["id"]),
            message_id=str(body.get("message_id", "")),
            recipient=str(body.get("recipient", "")),
            agreement=str(body.get("agreement", "")),
            flow=str(body.get("flow", "")),
            due_at=_time(body.get("due_at")),
            status=str(body.get("status", "")),
            overdue=bool(body.get("overdue", False)),
            acknowledged_at=_time(body.get("acknowledged_at")),
            acknowledged_by=body.get("acknowledged_by"),
            action=body.get("action"),
            late=body.get("late"),
            allowed_actions=_strs(body.get("allowed_actions")),
            raw=dict(body),
        )


@dataclass(frozen=True)
class DutyPage:
    duties: tuple[Duty, ...]
    #: pass as ``offset`` for the next page; ``None``: there is none
    next_offset: int | None


@dataclass(frozen=True)
class InboxEntry:
    """An entry of your inbox: a ``message`` (a delivery to an ``inbox`` subscription, with
    its ``delivery_id``) or a ``notice`` from the broker (``delivery_id`` ``None``)."""

    cursor: int
    kind: str
    delivery_id: str | None
    event: Event

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> InboxEntry:
        return cls(
            cursor=int(body["cursor"]),
            kind=str(body["kind"]),
            delivery_id=body.get("delivery_id"),
            event=dict(body.get("event") or {}),
        )

    @property
    def duty_ids(self) -> tuple[str, ...]:
        return duty_ids(self.event)


@dataclass(frozen=True)
class InboxPage:
    entries: tuple[InboxEntry, ...]
    #: pass as ``after`` to read on; acknowledge it once the entries are processed
    next_cursor: int
    #: this client's acknowledged cursor
    acknowledged: int

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> InboxPage:
        return cls(
            entries=tuple(InboxEntry.from_json(e) for e in body.get("entries") or []),
            next_cursor=int(body["next_cursor"]),
            acknowledged=int(body.get("acknowledged", 0)),
        )
