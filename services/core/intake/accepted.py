"""What intake answers (:class:`Accepted`), and that answer again for a repeated
Idempotency-Key.

An Idempotency-Key stands for one request of one client: the hash of what was asked
(:func:`request_hash`) is stored with the message. The same key with the same request is
answered with the message it stored (``replayed``); with another request it is refused
(:class:`~services.core.errors.IdempotencyKeyReused`, 409). A key older than
``idempotency_key_ttl_hours`` is forgotten and may be used again."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import IdempotencyKeyReused
from ..isa.engine import Decision
from ..runtime import Runtime
from ..timeliness.lifecycle import ORIGINAL, own_version


@dataclass(frozen=True)
class Accepted:
    """A message intake stored (an original or an update), or found stored under the
    caller's Idempotency-Key (``replayed``): its ids, its place in its lifecycle, the
    decision on it (recipients, what each receives, what was withheld and why) and the
    payload that decision applies to."""

    id: str
    message_type: str
    lifecycle: str
    #: an update's original (root) message id; None for an original
    refers_to: str | None
    #: 1 for an original; each update the next number
    version: int
    decision: Decision
    payload: Mapping[str, Any]
    #: release notices: notice period and lifecycle facts (see services.core.timeliness)
    timeliness: Mapping[str, Any] | None
    replayed: bool = False

    @classmethod
    def from_row(cls, message: Mapping[str, Any], *, replayed: bool = False) -> Accepted:
        """From a stored message row (or the row just stored)."""
        decision = Decision.from_dict(message["decision"])
        return cls(
            id=message["id"],
            message_type=decision.message_type,
            lifecycle=message.get("lifecycle") or ORIGINAL,
            refers_to=message.get("refers_to"),
            version=own_version(message),
            decision=decision,
            payload=message["payload"],
            timeliness=message.get("timeliness"),
            replayed=replayed,
        )


def request_hash(*parts: Any) -> str:
    """What an Idempotency-Key stands for: the same key with another request is a 409."""
    return hashlib.sha256(json.dumps(list(parts), sort_keys=True).encode()).hexdigest()


async def replay_if_seen(
    runtime: Runtime, client_id: str, idempotency_key: str | None, request: str
) -> Accepted | None:
    """The message stored when this client already used ``idempotency_key`` (and it has not
    expired), replayed; :class:`IdempotencyKeyReused` when it used it for another request;
    None when it is new."""
    if idempotency_key is None:
        return None
    ttl = dt.timedelta(hours=runtime.settings.http.idempotency_key_ttl_hours)
    existing = await runtime.store.idempotent_unexpired(
        client_id, idempotency_key, runtime.clock() - ttl
    )
    return None if existing is None else replayed(existing, request)


def replayed(existing: Mapping[str, Any], request: str) -> Accepted:
    """``existing`` (stored under the same Idempotency-Key) answered again, if it was stored
    for the same ``request``."""
    if existing["request_hash"] != request:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request; use a new key"
        )
    return Accepted.from_row(existing, replayed=True)
