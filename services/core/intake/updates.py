"""The sender's updates to a message it sent, each a message of its own (rules and states in
:mod:`services.core.timeliness.lifecycle`):

* :func:`amend` a release notice (the body is its complete new state, decided afresh);
* :func:`cancel` a release notice (reaches every party any earlier version reached);
* :func:`confirm_release` of a release notice's person;
* :func:`record_outcome` of a DIP breach (closes it).

Every update takes the same steps (:func:`_update`), in this order:

1. Answer again a request already made under the Idempotency-Key (or refuse the key reused
   for another request, 409).
2. Find the caller's root message (the id given, or the original it refers to); another
   agency's message answers exactly as one that does not exist (404 ``NotFound``).
3. Check its type and state allow the update (409, a ``LifecycleConflict``).
4. Build the update (a cancellation's decision and basis; the lifecycle facts) and the new
   version's payload, refusing a time of release or an outcome date in the future and an
   amendment about another person (422 ``ValidationFailed``).
5. Decide and store it with the root's new state in one transaction
   (:func:`~.originals.decide_and_store`); when another update moved the root on between
   reading and storing, from step 2 again, at most :data:`ATTEMPTS` times
   (409 ``ConcurrentUpdate``)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic_core import to_jsonable_python

from ..errors import ConcurrentUpdate, NotFound, ValidationFailed
from ..messages import MessageType, get_message_type
from ..messages.models import BreachOutcome
from ..messages.person import IDENTIFIERS
from ..runtime import Runtime
from ..store.values import StoredMessage
from ..timeliness.lifecycle import (
    AMEND,
    CANCEL,
    CONFIRM_RELEASE,
    OUTCOME,
    CancelReason,
    Transition,
    cancellation_decision,
    check_transition,
)
from .accepted import Accepted, replay_if_seen, request_hash
from .originals import Update, Wake, decide_and_store

#: how far ahead of the broker's clock a reported time of release may be (clock skew)
CLOCK_SKEW = dt.timedelta(minutes=5)
#: attempts when another update moves the root on between reading and storing
ATTEMPTS = 3

Row = Mapping[str, Any]
#: Step 4 of an update: from the root and its chain (oldest first), the update and the new
#: version's payload.
Prepare = Callable[[Row, Sequence[Row]], tuple[Update, dict[str, Any]]]


async def resolve_root(runtime: Runtime, message_id: str) -> StoredMessage | None:
    """The root of the chain ``message_id`` belongs to (itself, or what it refers to)."""
    row = await runtime.store.get_message(message_id)
    if row is not None and row["refers_to"]:
        row = await runtime.store.get_message(row["refers_to"])
    return row


def not_found(message_id: str) -> NotFound:
    """The one answer for a message that does not exist and another agency's."""
    return NotFound(f"no message {message_id!r}")


async def amend(
    runtime: Runtime,
    sender: str,
    message_id: str,
    body: bytes,
    *,
    client_id: str,
    idempotency_key: str | None = None,
    wake: Wake | None = None,
) -> Accepted:
    """A new version of a release notice, ``body`` its complete new state (validated as at
    intake), about the same person, decided afresh: each recipient the new state entitles
    receives its own projection of it."""
    mt = get_message_type(AMEND.message_type)

    def prepare(root: Row, chain: Sequence[Row]) -> tuple[Update, dict[str, Any]]:
        payload = mt.validate_json(body)
        _same_person(chain[-1]["payload"], payload)
        return Update(root, AMEND), payload

    raw = body.decode(errors="replace")
    return await _update(
        runtime, sender, client_id, message_id, AMEND, raw, prepare, idempotency_key, wake
    )


async def cancel(
    runtime: Runtime,
    sender: str,
    message_id: str,
    reason: CancelReason,
    *,
    client_id: str,
    idempotency_key: str | None = None,
    wake: Wake | None = None,
) -> Accepted:
    """Cancel a release notice: reaches every party any earlier version reached, each shown
    only the version it was entitled to (its basis), re-checked against the agreements in
    force at routing (fail closed)."""
    reason = CancelReason(reason)

    def prepare(root: Row, chain: Sequence[Row]) -> tuple[Update, dict[str, Any]]:
        decision, basis = cancellation_decision(chain, runtime.clock())
        update = Update(root, CANCEL, decision, basis, {"reason": reason.value})
        return update, _latest(chain)

    request = {"reason": reason.value}
    return await _update(
        runtime, sender, client_id, message_id, CANCEL, request, prepare, idempotency_key, wake
    )


async def confirm_release(
    runtime: Runtime,
    sender: str,
    message_id: str,
    released_at: dt.datetime,
    *,
    client_id: str,
    idempotency_key: str | None = None,
    wake: Wake | None = None,
) -> Accepted:
    """Confirm that a release notice's person was released at ``released_at`` (aware; not
    later than the broker's clock and :data:`CLOCK_SKEW`)."""

    def prepare(root: Row, chain: Sequence[Row]) -> tuple[Update, dict[str, Any]]:
        if released_at > runtime.clock() + CLOCK_SKEW:
            raise ValidationFailed(
                "released_at is in the future",
                [{"pointer": "/released_at", "message": "must not be in the future"}],
            )
        facts = {"released_at": released_at.isoformat()}
        return Update(root, CONFIRM_RELEASE, facts=facts), _latest(chain)

    # as the request body reads in JSON, so that a repeated request hashes the same
    request = {"released_at": to_jsonable_python(released_at)}
    return await _update(
        runtime,
        sender,
        client_id,
        message_id,
        CONFIRM_RELEASE,
        request,
        prepare,
        idempotency_key,
        wake,
    )


async def record_outcome(
    runtime: Runtime,
    sender: str,
    message_id: str,
    outcome: BreachOutcome,
    date: dt.date,
    *,
    client_id: str,
    idempotency_key: str | None = None,
    wake: Wake | None = None,
) -> Accepted:
    """Record the ``outcome`` of a DIP breach on ``date`` (not in the future), which closes
    it: the new version is the breach with its outcome set, decided afresh; its facts say
    whether the outcome came within the breach's short-term licence (``within_stl``)."""
    outcome = BreachOutcome(outcome)
    mt = get_message_type(OUTCOME.message_type)

    def prepare(root: Row, chain: Sequence[Row]) -> tuple[Update, dict[str, Any]]:
        if date > runtime.clock().date():
            raise ValidationFailed(
                "date is in the future",
                [{"pointer": "/date", "message": "must not be in the future"}],
            )
        stl = dt.date.fromisoformat(str(chain[-1]["payload"]["breach"]["stl_expiry"]))
        facts = {
            "outcome": outcome.value,
            "outcome_date": date.isoformat(),
            "within_stl": date <= stl,
        }
        return Update(root, OUTCOME, facts=facts), _with_outcome(mt, chain, outcome)

    request = {"outcome": outcome.value, "date": date.isoformat()}
    return await _update(
        runtime, sender, client_id, message_id, OUTCOME, request, prepare, idempotency_key, wake
    )


async def _update(
    runtime: Runtime,
    sender: str,
    client_id: str,
    message_id: str,
    transition: Transition,
    request: str | dict[str, Any],
    prepare: Prepare,
    idempotency_key: str | None,
    wake: Wake | None,
) -> Accepted:
    """The steps every update shares (the module docstring). ``request``: what the caller
    asked, as its Idempotency-Key stands for it."""
    mt = get_message_type(transition.message_type)
    req_hash = request_hash(transition.lifecycle, message_id, request)
    replay = await replay_if_seen(runtime, client_id, idempotency_key, req_hash)
    if replay is not None:
        return replay
    for _ in range(ATTEMPTS):
        root = await resolve_root(runtime, message_id)
        if root is None or root["sender"] != sender:
            raise not_found(message_id)
        check_transition(transition, root)
        chain = await runtime.store.lifecycle_chain(root["id"])
        update, payload = prepare(root, chain)
        accepted = await decide_and_store(
            runtime,
            sender,
            mt,
            payload,
            client_id=client_id,
            purposes=root.get("purposes"),
            idempotency_key=idempotency_key,
            request=req_hash,
            update=update,
            wake=wake,
        )
        if accepted is not None:
            return accepted
    raise ConcurrentUpdate(
        f"message {message_id!r} was updated by other requests at the same time; try again"
    )


def _latest(chain: Sequence[Row]) -> dict[str, Any]:
    """A copy of the latest state: the payload of a cancellation or a release confirmation."""
    latest: dict[str, Any] = json.loads(json.dumps(chain[-1]["payload"]))
    return latest


def _with_outcome(mt: MessageType, chain: Sequence[Row], outcome: BreachOutcome) -> dict[str, Any]:
    """The breach with its outcome set, validated as at intake."""
    latest = _latest(chain)
    latest["breach"]["outcome"] = outcome.value
    return mt.validate_json(json.dumps(latest).encode())


def _same_person(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """An amendment changes the notice, not whom it is about: every identifier given in both
    must be equal, and at least one must be given in both."""
    shared = [n for n in IDENTIFIERS if before["person"].get(n) and after["person"].get(n)]
    differing = [n for n in shared if before["person"][n] != after["person"][n]]
    if differing or not shared:
        names = differing or list(IDENTIFIERS)
        raise ValidationFailed(
            "an amendment must be about the same person as the notice it amends",
            [
                {"pointer": f"/person/{n}", "message": "must match the notice being amended"}
                for n in names
            ],
        )
