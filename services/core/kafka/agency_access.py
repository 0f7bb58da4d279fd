"""Each agency's access to its own Kafka topic, enforced by the cluster and kept in step with
its subscriptions: the use-case behind the subscription API, the client-disable API and CLI,
and start-up (services.core.kafka.acls does the cluster's side).

A party is *entitled* to cluster access while it has a ``kafka`` subscription that is not
deleted and at least one client that is not disabled. While entitled, its principal
``agency-<party>`` holds exactly :func:`~services.core.kafka.acls.party_bindings` (read its
topic, its own consumer groups); once not, its ACLs and its SCRAM credential are removed.
The credential is issued once, with the party's first ``kafka`` subscription (or again on
request, which replaces it); the product keeps no copy of the password.

Managed only on an external cluster with SASL (the embedded broker has neither principals
nor ACLs), unless ``ISA_BROKER_KAFKA_MANAGE_AGENCY_ACCESS`` says otherwise. Every change is
written to the disclosure log with the party and principal, never the password."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import Conflict
from .acls import (
    USER_PREFIX,
    ClusterAccess,
    PartyCredential,
    grant_party,
    issue_party_credential,
    party_principal,
    party_user,
    revoke_party,
)
from .config import KafkaProfile

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("isa_broker.kafka.access")


class NoKafkaSubscription(Conflict):
    code = "no_kafka_subscription"
    title = "No Kafka subscription"


class AgencyAccess:
    """``await AgencyAccess(store, profile, manage=True).sync(party)``."""

    def __init__(self, store: Store, profile: KafkaProfile, *, manage: bool) -> None:
        self.store = store
        self.profile = profile
        self.manage = manage and not profile.embedded

    async def entitled(self, party: str) -> bool:
        subscriptions = await self.store.list_subscriptions(party)
        if not any(s["channel"] == "kafka" and s["status"] != "deleted" for s in subscriptions):
            return False
        clients = await self.store.list_clients()
        return any(c["party"] == party and not c["disabled"] for c in clients)

    async def grant(self, party: str) -> PartyCredential | None:
        """Give ``party`` its ACLs (before its first ``kafka`` subscription is stored, so that
        a cluster that refuses leaves nothing behind); issue its credential if it has none.
        Returns the credential when one was issued now: show it to the agency once."""
        if not self.manage:
            return None
        async with ClusterAccess.connect(self.profile) as access:
            await grant_party(access, self.profile, party)
            held = await access.describe_scram_users([party_user(party)])
            credential = None if held else await issue_party_credential(access, party)
        await self._audit("kafka_access_granted", party, issued=credential is not None)
        return credential

    async def issue(self, party: str) -> PartyCredential:
        """A new credential for an entitled party; the previous password stops working."""
        if not self.manage:
            raise NoKafkaSubscription(
                "this broker does not manage Kafka principals (embedded broker, or "
                "ISA_BROKER_KAFKA_MANAGE_AGENCY_ACCESS is false): ask the operators"
            )
        if not await self.entitled(party):
            raise NoKafkaSubscription(
                f"{party} has no kafka subscription (or no enabled client): create one with "
                "POST /v1/subscriptions and channel kafka first"
            )
        async with ClusterAccess.connect(self.profile) as access:
            await grant_party(access, self.profile, party)
            credential = await issue_party_credential(access, party)
        await self._audit("kafka_credential_issued", party, issued=True)
        return credential

    async def sync(self, party: str) -> None:
        """After a subscription is deleted or a client disabled or enabled: grant if still
        entitled (no new credential), revoke if not."""
        if not self.manage:
            return
        async with ClusterAccess.connect(self.profile) as access:
            await self._sync(access, party)

    async def _sync(self, access: ClusterAccess, party: str) -> None:
        if await self.entitled(party):
            await grant_party(access, self.profile, party)
            return
        removed = await revoke_party(access, party)
        if removed:
            await self._audit("kafka_access_revoked", party, acls_removed=len(removed))

    async def reconcile(self, parties: list[str]) -> None:
        """At start-up: every party of the register as :meth:`sync` would leave it, and the
        principal of a party no longer in the register removed. One connection; the
        disclosure log records only what changed."""
        if not self.manage:
            return
        async with ClusterAccess.connect(self.profile) as access:
            for party in parties:
                await self._sync(access, party)
            known = {party_user(p) for p in parties}
            for user in await access.describe_scram_users():
                if user.name.startswith(USER_PREFIX) and user.name not in known:
                    party = user.name[len(USER_PREFIX) :]
                    removed = await revoke_party(access, party)
                    await self._audit("kafka_access_revoked", party, acls_removed=len(removed))

    async def _audit(self, event: str, party: str, **detail: object) -> None:
        log.info("%s: %s (%s)", event, party, party_principal(party))
        await self.store.audit(
            event,
            actor="broker",
            recipient=party,
            detail={"principal": party_principal(party), **detail},
        )
