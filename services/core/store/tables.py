"""Table definitions (SQLAlchemy Core), shared by SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("party", sa.String(64), nullable=False, index=True),
    sa.Column("secret_hash", sa.String(128)),
    sa.Column("jwks", sa.JSON),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    # the client's id at an external OpenID Connect provider (ISA_BROKER_OIDC_ISSUER)
    sa.Column("external_subject", sa.String(255), unique=True),
)

# private_key_jwt assertion ids seen, kept until the assertion expires (RFC 7523 s3 item 7);
# in the store so that every gateway replica refuses a replay
client_assertions = sa.Table(
    "client_assertions",
    metadata,
    sa.Column("key", sa.String(320), primary_key=True),
    sa.Column("expires_at", TS, nullable=False, index=True),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("message_type", sa.String(64), nullable=False),
    sa.Column("sender", sa.String(64), nullable=False, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("purposes", sa.JSON),
    sa.Column("person", sa.String(64), nullable=False, index=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("decision", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("accepted_at", TS, nullable=False),
    sa.Column("completed_at", TS),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("request_hash", sa.String(64)),
    # set when the router has recorded a delivery row for every recipient; a message left
    # unrouted past a threshold is published again by the reconciler
    sa.Column("routed_at", TS),
    # lifecycle: an update (amendment, cancellation, confirmation, outcome) is a message of
    # its own that refers to the original (``refers_to``); the original carries the current
    # ``state`` and ``version`` of the whole chain
    sa.Column("refers_to", sa.String(36), index=True),
    sa.Column("lifecycle", sa.String(16)),
    sa.Column("state", sa.String(16)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # computed at intake: notice period, days early, short notice, STL expiry (no personal data)
    sa.Column("timeliness", sa.JSON),
    # 1: the priority lane (a recall of a person unlawfully at large); 0 otherwise
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    # the W3C traceparent of the request that sent it, when traces are on (services.core.tracing)
    sa.Column("trace_context", sa.String(64)),
    sa.UniqueConstraint("client_id", "idempotency_key", name="uq_messages_idempotency"),
    sa.Index("ix_messages_unrouted", "person", "routed_at", "accepted_at"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("message_id", sa.String(36), sa.ForeignKey("messages.id"), primary_key=True),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("published_at", TS, index=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.String(500)),
    sa.Column("republished", sa.Integer, nullable=False, server_default="0"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("party", sa.String(64), nullable=False, index=True),
    sa.Column("message_types", sa.JSON, nullable=False),
    sa.Column("channel", sa.String(16), nullable=False, server_default="webhook"),
    sa.Column("url", sa.String(2000)),
    # sealed at rest (services.core.crypto.at_rest): "env1:<kek>:<wrapped key>:<value>"
    sa.Column("secret", sa.String(500)),
    # v1: HMAC-SHA256 with `secret` (whsec_); v1a: ed25519 with `secret` (whsk_)
    sa.Column("signature_scheme", sa.String(8), nullable=False, server_default="v1"),
    # the secret before the last rotation, still used to sign until previous_secret_until
    sa.Column("previous_secret", sa.String(500)),
    sa.Column("previous_secret_until", TS),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.String(500)),
    # first failure of the current run of failures; cleared by a success
    sa.Column("failing_since", TS),
    # narrowing filters (local authority, PDU, risk flags, cohort); see services.core.filters
    sa.Column("filters", sa.JSON),
    # webhook bodies encrypted to the party's registered public key (compact JWE); a Kafka
    # subscription's records always are (services.core.crypto.recipient)
    sa.Column("encrypt", sa.Boolean, nullable=False, server_default=sa.false()),
)

# Each party's public encryption keys (EC JWK, ECDH-ES+A256KW): deliveries on its Kafka topic
# and encrypted webhook bodies are sealed to its newest key that is not retired. Public keys
# only; the private halves never reach the broker.
party_keys = sa.Table(
    "party_keys",
    metadata,
    sa.Column("party", sa.String(64), primary_key=True),
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("jwk", sa.JSON, nullable=False),
    sa.Column("thumbprint", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("retired_at", TS),
)

# an IOM team's watch-list: the people a subscription's cohort filter matches, each kept as
# the keyed pseudonym messages carry, never the identifier in clear
cohort_members = sa.Table(
    "cohort_members",
    metadata,
    sa.Column("subscription_id", sa.String(36), primary_key=True),
    sa.Column("person", sa.String(64), primary_key=True),
    sa.Column("added_at", TS, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "message_id", sa.String(36), sa.ForeignKey("messages.id"), nullable=False, index=True
    ),
    sa.Column("recipient", sa.String(64), nullable=False, index=True),
    sa.Column("subscription_id", sa.String(36)),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("grants", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # copied from the message so that the dispatcher can keep per-person order cheaply
    sa.Column("person", sa.String(64)),
    sa.Column("accepted_at", TS),
    sa.Column("message_type", sa.String(64)),
    sa.Column("next_attempt_at", TS),
    sa.Column("retry_index", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", TS),
    # copied from the message: the priority lane is attempted first
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_at", TS),
    # retention (services.core.retention): the longest period the granting agreements
    # declare for the recipient, when it ends, and when the recipient was told to delete
    sa.Column("retention", sa.String(32)),
    sa.Column("retain_until", TS, index=True),
    sa.Column("deletion_notified_at", TS),
    # the W3C traceparent of the routing that recorded it, when traces are on: its attempts'
    # spans continue that trace (services.core.tracing)
    sa.Column("trace_context", sa.String(64)),
    sa.UniqueConstraint("message_id", "recipient", "subscription_id", name="uq_delivery"),
    sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
    sa.Index("ix_deliveries_order", "subscription_id", "person", "status"),
)

inbox = sa.Table(
    "inbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("party", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("delivery_id", sa.String(40)),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_inbox_party_seq", "party", "seq"),
)

inbox_cursors = sa.Table(
    "inbox_cursors",
    metadata,
    # one cursor per client: an agency's systems each read the inbox at their own pace
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("party", sa.String(64), nullable=False),
    sa.Column("cursor", sa.Integer, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", sa.String(40), sa.ForeignKey("deliveries.id"), nullable=False, index=True
    ),
    sa.Column("at", TS, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.String(500)),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(36), index=True),
    sa.Column("message_type", sa.String(64)),
    sa.Column("actor", sa.String(64)),
    sa.Column("recipient", sa.String(64)),
    sa.Column("person", sa.String(64)),
    sa.Column("detail", sa.JSON, nullable=False),
    # set by the sealer (services.core.audit): the entry's place in the tamper-evident log,
    # its RFC 9162 leaf hash and the hash chain up to it (hex SHA-256); null until sealed
    sa.Column("position", sa.BigInteger),
    sa.Column("leaf_hash", sa.String(64)),
    sa.Column("chain_hash", sa.String(64)),
    sa.UniqueConstraint("position", name="uq_audit_position"),
)

# Signed checkpoints of the disclosure log: the Merkle tree hash of its first ``tree_size``
# sealed entries and the chain hash of the last, signed with the log-signing key (ed25519)
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("chain_hash", sa.String(64), nullable=False),
    sa.Column("signed_at", TS, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(128), nullable=False),
)

# Acknowledgement duties a flow of an agreement puts on a recipient: acknowledge by ``due_at``
# or the duty escalates to the sender and the agreement's escalation parties.
duties = sa.Table(
    "duties",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    # the original message (root of the lifecycle chain) the duty is about
    sa.Column("message_id", sa.String(36), nullable=False, index=True),
    sa.Column("message_type", sa.String(64), nullable=False),
    sa.Column("person", sa.String(64), nullable=False),
    sa.Column("sender", sa.String(64), nullable=False, index=True),
    sa.Column("recipient", sa.String(64), nullable=False, index=True),
    sa.Column("agreement", sa.String(64), nullable=False),
    sa.Column("agreement_version", sa.String(16), nullable=False),
    sa.Column("flow", sa.String(64), nullable=False),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("escalate_to", sa.JSON, nullable=False),
    sa.Column("due_at", TS, nullable=False),
    # open | acknowledged | escalated | cleared (the notice was cancelled)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("acknowledged_at", TS),
    sa.Column("acknowledged_by", sa.String(64)),
    sa.Column("action", sa.String(64)),
    sa.Column("late", sa.Boolean),
    sa.Column("escalated_at", TS),
    sa.UniqueConstraint("message_id", "recipient", "agreement", "flow", name="uq_duty"),
    sa.Index("ix_duties_status_due", "status", "due_at"),
)

# The durable scheduler: one row per deadline or reminder. A row fires once (a conditional
# update claims it), whichever router instance sees it due first.
timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("subject", sa.String(40), nullable=False),
    sa.Column("due_at", TS, nullable=False),
    # pending | done | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", TS),
    sa.Column("fired_at", TS),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(500)),
    sa.Column("detail", sa.JSON),
    sa.UniqueConstraint("kind", "subject", name="uq_timer"),
    sa.Index("ix_timers_due", "status", "due_at"),
)

# Subject access: the keyed pseudonym of EVERY identifier (PNC id, CRN, prison number) a
# message's person carried, so that a search by any one of them finds the message, whichever
# identifier it is keyed by (``messages.person``, ``audit.person``). Written in the same
# transaction as the message; never an identifier in clear.
person_index = sa.Table(
    "person_index",
    metadata,
    sa.Column("pseudonym", sa.String(64), primary_key=True),
    sa.Column("message_id", sa.String(36), primary_key=True),
    # the primary key leads with the pseudonym: it is the index a search uses
)
