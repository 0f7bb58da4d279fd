"""Prometheus metrics of a running part, served at ``/metrics`` by the gateway and by a
router's endpoint (the catalogue: docs/operations.md, Metrics).

Two kinds:

* counters and a histogram of what this process did since it started (intake by message
  type and outcome, decision latency, delivery outcomes by channel and recipient, endpoints
  disabled, republished messages, API refusals by error code), incremented where it
  happens;
* gauges of the work in hand, read from the store at each scrape
  (:meth:`~services.core.store.gauges.GaugeStore.operational_state`), and this router's
  Kafka consumer lag. Every part reads the same store, so every part reports the same
  values for these: aggregate them with ``max``, not ``sum``;
* gauges of the signing keys (token and delivery), read from the key files at each scrape
  (:meth:`~services.core.crypto.keys.KeyStore.signing_key_ages`): the age of the key that
  signs now and the policy that rotates it. Reading them rotates nothing and makes no key,
  and no key material, kid or thumbprint is reported. Parts sharing a data directory
  report the same values: ``max`` again.

Labels carry party ids, message types, channels, outcomes and error codes: never anything
about a person. One registry per process, so a whole system in one process (``isa-broker
dev``) reports its gateway's and router's counters together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    exposition,
    generate_latest,
)

from .errors import Unavailable
from .store import Store

if TYPE_CHECKING:
    from .crypto.keys import KeyStore

CONTENT_TYPE = exposition.CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

INTAKE = Counter(
    "isa_broker_intake",
    "Messages offered to the gateway (originals and updates), by message type and outcome: "
    "accepted, replayed (an Idempotency-Key seen before), refused (no agreement permits the "
    "share), invalid (the body does not match the message type).",
    ["message_type", "outcome"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "isa_broker_decision_seconds",
    "Time the ISA engine took to decide one message at intake, by message type.",
    ["message_type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "isa_broker_deliveries",
    "Outcomes recorded for deliveries by this router, by channel, outcome (delivered, "
    "retrying, dead_lettered, withheld) and recipient party.",
    ["channel", "outcome", "recipient"],
    registry=REGISTRY,
)
ENDPOINTS_DISABLED = Counter(
    "isa_broker_endpoints_disabled",
    "Webhook subscriptions this router disabled (failing too long, or 410 Gone), by party.",
    ["recipient"],
    registry=REGISTRY,
)
REPUBLISHED = Counter(
    "isa_broker_outbox_republished",
    "Accepted messages the reconciler published again because no router had routed them.",
    registry=REGISTRY,
)
API_REFUSALS = Counter(
    "isa_broker_api_refusals",
    "API requests answered with an error, by its code (invalid_token, insufficient_scope, "
    "rate_limited, sharing_refused, validation_failed, ...).",
    ["code"],
    registry=REGISTRY,
)
STORE_UP = Gauge(
    "isa_broker_store_up",
    "1 when the last scrape could read the store, else 0 (the gauges below then keep their "
    "previous values).",
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "isa_broker_consumer_lag",
    "Records on the message-type topics not yet consumed by this router's consumers, by topic.",
    ["topic"],
    registry=REGISTRY,
)
SIGNING_KEY_AGE = Gauge(
    "isa_broker_signing_key_age_seconds",
    "Age of the signing key that signs now, by key: token (access tokens) or delivery "
    "(records and webhook bodies encrypted to agencies); measured from when it began to "
    "sign. No sample until the first key of that kind is made.",
    ["key"],
    registry=REGISTRY,
)
SIGNING_KEY_MAX_AGE = Gauge(
    "isa_broker_signing_key_max_age_seconds",
    "Age at which a signing key is rotated, on its first use from then on "
    "(ISA_BROKER_SIGNING_KEY_MAX_AGE_DAYS), by key.",
    ["key"],
    registry=REGISTRY,
)
SIGNING_KEY_PUBLISH_AHEAD = Gauge(
    "isa_broker_signing_key_publish_ahead_seconds",
    "How long a rotation publishes the next signing key before it signs, the old key "
    "signing meanwhile (ISA_BROKER_SIGNING_KEY_PUBLISH_AHEAD_SECONDS), by key.",
    ["key"],
    registry=REGISTRY,
)

#: the gauges read from the store: name (after ``isa_broker_``) -> help
STATE = {
    "outbox_unpublished": "Accepted messages not yet published to Kafka.",
    "outbox_oldest_unpublished_seconds": "Age of the oldest accepted message not yet published.",
    "messages_unrouted": "Accepted messages no router has routed yet.",
    "messages_oldest_unrouted_seconds": "Age of the oldest accepted message not yet routed.",
    "deliveries_pending": "Deliveries not yet attempted.",
    "deliveries_retrying": "Deliveries waiting for their next attempt after a failure.",
    "deliveries_oldest_retrying_seconds": "Age of the oldest delivery waiting for a retry.",
    "deliveries_dead_lettered": "Deliveries dead-lettered and not replayed.",
    "subscriptions_disabled": "Subscriptions disabled (a failing endpoint) and not re-enabled.",
    "duties_open": "Acknowledgement duties open and not yet due.",
    "duties_overdue": "Acknowledgement duties past due and not yet escalated.",
    "duties_escalated": "Acknowledgement duties escalated and still not acknowledged.",
    "dip_breaches_nearing_stl": "DIP breaches with no outcome whose STL expires within a day.",
    "audit_unsealed": "Disclosure-log entries not yet sealed into the hash chain.",
    "audit_oldest_unsealed_seconds": "Age of the oldest disclosure-log entry not yet sealed.",
}
_STATE_GAUGES = {
    name: Gauge(f"isa_broker_{name}", help_, registry=REGISTRY) for name, help_ in STATE.items()
}


def _read_signing_keys(keys: KeyStore, now: dt.datetime) -> None:
    for name, found in keys.signing_key_ages(now).items():
        SIGNING_KEY_MAX_AGE.labels(key=name).set(found.max_age_seconds)
        SIGNING_KEY_PUBLISH_AHEAD.labels(key=name).set(found.publish_ahead_seconds)
        if found.age_seconds is None:  # no key of this kind (yet): no sample
            SIGNING_KEY_AGE.remove(name)
        else:
            SIGNING_KEY_AGE.labels(key=name).set(found.age_seconds)


async def render(
    store: Store,
    now: dt.datetime,
    lag: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
    *,
    keys: KeyStore | None = None,
) -> bytes:
    """The exposition text of this process's metrics, the store's gauges read now; ``lag``:
    this router's consumer lag by topic; ``keys``: the signing keys whose ages to report."""
    try:
        state = await store.operational_state(now)
    except Unavailable:
        STORE_UP.set(0)
    else:
        STORE_UP.set(1)
        for name, value in state.items():
            _STATE_GAUGES[name].set(value)
    if lag is not None:
        for topic, behind in (await lag()).items():
            CONSUMER_LAG.labels(topic=topic).set(behind)
    if keys is not None:
        _read_signing_keys(keys, now)
    return generate_latest(REGISTRY)
