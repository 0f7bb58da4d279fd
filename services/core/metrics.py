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
  values for these: aggregate them with ``max``, not ``sum``.

Labels carry party ids, message types, channels, outcomes and error codes: never anything
about a person. One registry per process, so a whole system in one process (``isa-broker
dev``) reports its gateway's and router's counters together."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping

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


async def render(
    store: Store,
    now: dt.datetime,
    lag: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
) -> bytes:
    """The exposition text of this process's metrics, the store's gauges read now; ``lag``:
    this router's consumer lag by topic."""
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
    return generate_latest(REGISTRY)
