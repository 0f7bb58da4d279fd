"""Publishing, for the agencies that send: a message, its updates (amend, cancel, confirm
release, record an outcome), its state and the decision behind it."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ._transport import Params, Transport, segment, utc
from .models import Accepted, MessageType


class Publishing(Transport):
    """Publishing and reading your own messages."""

    async def _accepted(
        self,
        path: str,
        body: Mapping[str, Any],
        idempotency_key: str | None,
        params: Params | None = None,
    ) -> Accepted:
        key = idempotency_key or str(uuid.uuid4())
        response = await self.request(
            "POST",
            path,
            params=params,
            json=body,
            headers={"idempotency-key": key},
            repeatable=True,
        )
        replayed = response.headers.get("idempotent-replayed", "").lower() == "true"
        return Accepted.from_json(response.json(), idempotency_key=key, replayed=replayed)

    async def publish(
        self,
        message_type: MessageType | str,
        body: Mapping[str, Any],
        *,
        purposes: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Publish a message (scope ``publish:<type>``).

        ``purposes`` names the purposes of the share (none: every purpose an agreement lets
        your party use). ``idempotency_key``: keep it with the event and give it again when
        you repeat the call after a failure; one is made when you give none (and is on the
        answer as ``idempotency_key``). Raises
        :class:`~isa_broker_client.errors.SharingRefused` when no agreement permits the share,
        :class:`~isa_broker_client.errors.ValidationFailed` (with ``fields``) when the body
        does not match its schema."""
        return await self._accepted(
            f"/v1/messages/{segment(message_type)}",
            body,
            idempotency_key,
            [("purpose", p) for p in purposes],
        )

    async def amend(
        self, message_id: str, body: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Accepted:
        """Amend a release notice you sent: ``body`` is its complete new state."""
        return await self._accepted(
            f"/v1/messages/{segment(message_id)}/amend", body, idempotency_key
        )

    async def cancel(
        self, message_id: str, reason: str, *, idempotency_key: str | None = None
    ) -> Accepted:
        """Cancel a release notice you sent, with a reason code."""
        return await self._accepted(
            f"/v1/messages/{segment(message_id)}/cancel", {"reason": reason}, idempotency_key
        )

    async def confirm_release(
        self, message_id: str, released_at: dt.datetime, *, idempotency_key: str | None = None
    ) -> Accepted:
        """Confirm that the person of a release notice you sent was released."""
        return await self._accepted(
            f"/v1/messages/{segment(message_id)}/confirm-release",
            {"released_at": utc(released_at)},
            idempotency_key,
        )

    async def record_outcome(
        self,
        message_id: str,
        outcome: str,
        date: dt.date,
        *,
        idempotency_key: str | None = None,
    ) -> Accepted:
        """Record the outcome of a DIP breach you sent."""
        return await self._accepted(
            f"/v1/messages/{segment(message_id)}/outcome",
            {"outcome": outcome, "date": date.isoformat()},
            idempotency_key,
        )

    async def get_message(self, message_id: str) -> dict[str, Any]:
        """A message's state and history: in full if you sent it, your projections if you
        received it (scope ``messages:read``)."""
        body: dict[str, Any] = await self._json(
            "GET", f"/v1/messages/{segment(message_id)}", repeatable=True
        )
        return body

    async def get_decision(self, message_id: str) -> dict[str, Any]:
        """The decision behind a message you sent, field by field (``decisions:read``)."""
        body: dict[str, Any] = await self._json(
            "GET", f"/v1/decisions/{segment(message_id)}", repeatable=True
        )
        return body
