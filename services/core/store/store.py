"""The durable store: one async data layer over SQLite (embedded default) and PostgreSQL.

:class:`Store` is the sum of its parts, one module per aggregate or concern, each a subclass
of :class:`~.base.StoreBase` (the engine and its transactions):

* :mod:`.clients` — API clients and the client assertions seen;
* :mod:`.messages` — messages, their outbox, Idempotency-Keys, routing and reconciliation;
* :mod:`.lifecycle` — updates to a message (amendment, cancellation, confirmation);
* :mod:`.subscriptions` — subscriptions and their endpoints' health;
* :mod:`.deliveries` — due deliveries, leases, outcomes, replay and attempts;
* :mod:`.inbox` — the inbox channel's feed and cursors;
* :mod:`.filters` — a subscription's filters and the priority lane's latency figures;
* :mod:`.timeliness` — acknowledgement duties, DIP deadlines and the durable scheduler;
* :mod:`.audit_log` — the disclosure log, its seals and checkpoints;
* :mod:`.subject_access` — a person's disclosures, found by pseudonym;
* :mod:`.retention` — how long recipients may keep what they were sent;
* :mod:`.party_keys` — agencies' encryption keys;
* :mod:`.reports` — the backlog and the partnership's reports;
* :mod:`.gauges` — what the metrics endpoints read at each scrape.

Domain code that must write several things at once does so through
``async with store.transaction() as tx`` (:class:`~.transaction.Transaction`)."""

from __future__ import annotations

from .audit_log import AuditLogStore
from .clients import ClientStore
from .deliveries import DeliveryStore
from .filters import FilterStore
from .gauges import GaugeStore
from .inbox import InboxStore
from .lifecycle import LifecycleStore
from .messages import MessageStore
from .party_keys import PartyKeyStore
from .reports import ReportStore
from .retention import RetentionStore
from .subject_access import SubjectAccessStore
from .subscriptions import SubscriptionStore
from .timeliness import TimelinessStore

__all__ = ["Store"]


class Store(
    ClientStore,
    LifecycleStore,
    MessageStore,
    SubscriptionStore,
    DeliveryStore,
    InboxStore,
    FilterStore,
    TimelinessStore,
    AuditLogStore,
    SubjectAccessStore,
    RetentionStore,
    PartyKeyStore,
    ReportStore,
    GaugeStore,
):
    """The whole store (see the module docstring for its parts)."""
