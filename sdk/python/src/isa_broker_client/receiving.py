"""Receiving: your deliveries and dead letters (and replaying them), your acknowledgement
duties, and your inbox."""

from __future__ import annotations

import datetime as dt

from ._transport import Transport, params_of, segment, utc
from .inbox import InboxStream
from .models import Delivery, Duty, DutyPage, InboxPage


class Receiving(Transport):
    """Deliveries, dead letters, duties and the inbox."""

    # -- deliveries and dead letters -------------------------------------------------------------

    async def list_deliveries(
        self,
        *,
        status: str | None = None,
        subscription_id: str | None = None,
        message_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """Deliveries to your party, oldest first (scope ``deliveries:read``)."""
        found = await self._json(
            "GET",
            "/v1/deliveries",
            params=params_of(
                status=status,
                subscription_id=subscription_id,
                message_id=message_id,
                since=since,
                until=until,
                limit=limit,
            ),
            repeatable=True,
        )
        return [Delivery.from_json(d) for d in found]

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """One delivery with its attempt ``history``."""
        return Delivery.from_json(
            await self._json("GET", f"/v1/deliveries/{segment(delivery_id)}", repeatable=True)
        )

    async def list_dead_letters(
        self,
        *,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int | None = None,
    ) -> list[Delivery]:
        """Your dead-lettered deliveries, with their history; ``last_error`` says why."""
        found = await self._json(
            "GET",
            "/v1/dead-letters",
            params=params_of(
                subscription_id=subscription_id, since=since, until=until, limit=limit
            ),
            repeatable=True,
        )
        return [Delivery.from_json(d) for d in found]

    async def replay_dead_letter(self, delivery_id: str) -> list[str]:
        """Queue one dead letter again (its subscription must be active); the ids queued."""
        found = await self._json("POST", f"/v1/dead-letters/{segment(delivery_id)}/replay")
        return [str(i) for i in found["replayed"]]

    async def replay_dead_letters(
        self,
        *,
        subscription_id: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> list[str]:
        """Queue again the dead letters of a subscription, a time range, or both."""
        if subscription_id is None and since is None and until is None:
            raise ValueError("name a subscription_id, a time range (since/until), or both")
        body: dict[str, str] = {}
        if subscription_id is not None:
            body["subscription_id"] = subscription_id
        if since is not None:
            body["since"] = utc(since)
        if until is not None:
            body["until"] = utc(until)
        found = await self._json("POST", "/v1/dead-letters/replay", json=body)
        return [str(i) for i in found["replayed"]]

    # -- duties ----------------------------------------------------------------------------------

    async def list_duties(
        self,
        *,
        role: str = "recipient",
        status: str | None = None,
        message_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> DutyPage:
        """Your duties as ``recipient`` (the default), ``sender`` or ``escalation`` party,
        earliest due first; ``status`` ``open``, ``overdue``, ``acknowledged``, ``escalated``
        or ``cleared``."""
        found = await self._json(
            "GET",
            "/v1/duties",
            params=params_of(
                role=role, status=status, message_id=message_id, limit=limit, offset=offset
            ),
            repeatable=True,
        )
        return DutyPage(
            duties=tuple(Duty.from_json(d) for d in found["duties"]),
            next_offset=found.get("next_offset"),
        )

    async def get_duty(self, duty_id: str) -> Duty:
        return Duty.from_json(
            await self._json("GET", f"/v1/duties/{segment(duty_id)}", repeatable=True)
        )

    async def acknowledge_duty(self, duty_id: str, action: str | None = None) -> Duty:
        """Acknowledge a duty of yours, optionally with an action code its flow allows
        (``allowed_actions``). Safe to repeat: the broker answers with the first
        acknowledgement. Raises :class:`~isa_broker_client.errors.DutyCleared` when there is
        nothing to acknowledge any more."""
        body = {"action": action} if action is not None else None
        return Duty.from_json(
            await self._json(
                "POST",
                f"/v1/duties/{segment(duty_id)}/acknowledge",
                json=body,
                repeatable=True,
            )
        )

    # -- inbox -----------------------------------------------------------------------------------

    async def read_inbox(
        self, *, after: int | None = None, limit: int = 100, wait: float = 0
    ) -> InboxPage:
        """One page of your inbox after ``after`` (default: this client's acknowledged
        cursor), waiting up to ``wait`` seconds for an entry when there is none."""
        found = await self._json(
            "GET",
            "/v1/inbox",
            params=params_of(after=after, limit=limit, wait=wait),
            repeatable=True,
            timeout=max(self._timeout, wait + 15.0),
        )
        return InboxPage.from_json(found)

    async def ack_inbox(self, cursor: int) -> tuple[int, int]:
        """Acknowledge every entry up to and including ``cursor``: ``(previous,
        acknowledged)``. The cursor never moves back."""
        found = await self._json("POST", "/v1/inbox/ack", json={"cursor": cursor}, repeatable=True)
        return int(found["previous"]), int(found["acknowledged"])

    def inbox(
        self,
        *,
        after: int | None = None,
        limit: int = 100,
        wait: float = 30.0,
        auto_ack: bool = True,
        stop_when_empty: bool = False,
    ) -> InboxStream:
        """Your inbox as an async iterator, long-polling ``wait`` seconds at a time (see
        :class:`~isa_broker_client.inbox.InboxStream`)."""
        return InboxStream(
            self,
            after=after,
            limit=limit,
            wait=wait,
            auto_ack=auto_ack,
            stop_when_empty=stop_when_empty,
        )
