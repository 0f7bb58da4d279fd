"""Subscribing: subscriptions on the three channels, their filters, cohorts and signing keys,
your Kafka credential, and the public encryption keys deliveries are sealed to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._transport import Transport, segment
from .models import (
    Channel,
    EncryptionKey,
    KafkaCredential,
    MessageType,
    SignatureScheme,
    Subscription,
)


class Subscribing(Transport):
    """Subscriptions and encryption keys (scope ``subscriptions:manage``)."""

    # -- subscriptions ---------------------------------------------------------------------------

    async def create_subscription(
        self,
        message_types: Sequence[MessageType | str],
        *,
        channel: Channel = "webhook",
        url: str | None = None,
        signature_scheme: SignatureScheme | None = None,
        encrypt: bool = False,
        filters: Mapping[str, Any] | None = None,
    ) -> Subscription:
        """Subscribe (scope ``subscriptions:manage``): a ``webhook`` to ``url`` (signed
        ``v1`` by default, or ``v1a``; ``encrypt`` for sealed bodies), your ``inbox``, or your
        ``kafka`` topic (always sealed). Both need a registered encryption key when sealed.

        Keep the answer's ``secret`` (v1) and ``kafka_credential``: they are shown only
        here."""
        if (channel == "webhook") != (url is not None):
            raise ValueError("a webhook subscription needs url; other channels take none")
        if signature_scheme is not None and channel != "webhook":
            raise ValueError("signature_scheme applies to webhook subscriptions only")
        body: dict[str, Any] = {"message_types": list(message_types), "channel": channel}
        if url is not None:
            body["webhook"] = {"url": url}
        if signature_scheme is not None:
            body["signature_scheme"] = signature_scheme
        if encrypt and channel == "webhook":
            body["encrypt"] = True
        if filters is not None:
            body["filters"] = dict(filters)
        return Subscription.from_json(await self._json("POST", "/v1/subscriptions", json=body))

    async def list_subscriptions(self) -> list[Subscription]:
        """Your subscriptions that are not deleted (active or disabled)."""
        found = await self._json("GET", "/v1/subscriptions", repeatable=True)
        return [Subscription.from_json(s) for s in found]

    async def set_subscription_filters(
        self, subscription_id: str, filters: Mapping[str, Any] | None
    ) -> Subscription:
        """Replace a subscription's filters (``None`` removes them); nothing else changes."""
        body = {"filters": dict(filters) if filters is not None else None}
        return Subscription.from_json(
            await self._json("PATCH", f"/v1/subscriptions/{segment(subscription_id)}", json=body)
        )

    async def enable_subscription(self, subscription_id: str) -> Subscription:
        """Re-enable a subscription the broker disabled (then replay its dead letters)."""
        return Subscription.from_json(
            await self._json(
                "POST", f"/v1/subscriptions/{segment(subscription_id)}/enable", repeatable=True
            )
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; what was still waiting for it is dead-lettered."""
        await self.request("DELETE", f"/v1/subscriptions/{segment(subscription_id)}")

    async def rotate_subscription_secret(
        self, subscription_id: str, *, overlap_seconds: int | None = None
    ) -> Subscription:
        """A new signing key for a webhook subscription: the new ``secret`` (v1, shown only
        in this answer) or ``public_key`` (v1a). Until ``previous_secret_until`` the previous
        key signs too; verify with both meanwhile."""
        body = {"overlap_seconds": overlap_seconds} if overlap_seconds is not None else {}
        return Subscription.from_json(
            await self._json(
                "POST", f"/v1/subscriptions/{segment(subscription_id)}/rotate-secret", json=body
            )
        )

    async def change_cohort(
        self,
        subscription_id: str,
        *,
        add: Sequence[Mapping[str, str]] = (),
        remove: Sequence[Mapping[str, str]] = (),
    ) -> dict[str, Any]:
        """Add people to or remove them from a subscription's cohort watch-list, each as
        the identifiers you hold (``{"pnc_id": ..., "crn": ...}``)."""
        body = {"add": [dict(m) for m in add], "remove": [dict(m) for m in remove]}
        found: dict[str, Any] = await self._json(
            "PUT", f"/v1/subscriptions/{segment(subscription_id)}/cohort", json=body
        )
        return found

    async def issue_kafka_credential(self) -> KafkaCredential:
        """A new password for your party's Kafka user (the previous one stops working)."""
        return KafkaCredential.from_json(await self._json("POST", "/v1/kafka-credential"))

    # -- encryption keys -------------------------------------------------------------------------

    async def register_encryption_key(self, public_jwk: Mapping[str, Any]) -> EncryptionKey:
        """Register a public key (``crypto.generate_key``): deliveries are encrypted to it
        from now on. Never send the private half (the broker refuses it)."""
        if "d" in public_jwk:
            raise ValueError("that JWK holds a private key: register the public half only")
        return EncryptionKey.from_json(
            await self._json("POST", "/v1/encryption-keys", json={"jwk": dict(public_jwk)})
        )

    async def list_encryption_keys(self) -> list[EncryptionKey]:
        found = await self._json("GET", "/v1/encryption-keys", repeatable=True)
        return [EncryptionKey.from_json(k) for k in found]

    async def retire_encryption_key(self, kid: str) -> EncryptionKey:
        """Nothing new is encrypted to ``kid``; keep its private half until its records are
        consumed."""
        return EncryptionKey.from_json(
            await self._json("DELETE", f"/v1/encryption-keys/{segment(kid)}")
        )
