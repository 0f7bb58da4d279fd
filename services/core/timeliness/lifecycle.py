"""The lifecycle of a message: updates that refer to it, the state they move it to, and who
receives each one.

An update (an amendment, a cancellation, a release confirmation, a DIP breach outcome) is a
message of its own: own id, ``refers_to`` = the ROOT (original) message's id, ``lifecycle``
naming what it is, and its own ``version`` (the root's version + 1). The root carries the
current ``state`` and ``version`` of the whole chain::

    release notice:  notified --amend--> amended --amend--> amended
                        |                   |
                        +--cancel/confirm---+--> cancelled | released   (final)
    DIP breach:      open --outcome--> closed          (or expired by its deadline timer)

Who receives an update
----------------------
Amendments, release confirmations and outcomes are decided by the ISA engine afresh on their
own payload, like any message: a recipient receives its own projection of the new state, and
a party the new state no longer entitles receives nothing.

A cancellation must reach everyone any earlier version reached, even a party that a later
amendment excluded (e.g. the risk was lowered, so the police IOM flow's condition became
false). Its decision is therefore built, not decided: each party that any earlier version's
decision included, with its share (``RecipientDecision``) from the most recent version that
included it - that version is the party's *basis* (``decision["basis"][party]``). What the
party receives is its projection of its basis version's payload, not of the latest state: a
party excluded from an amendment is told that the notice is cancelled, and shown only what it
was already entitled to see (never the amended address it was not entitled to).

The re-check at routing and before each attempt (:func:`recheck_shares`) is, for a
cancellation, made per basis version, against that version's payload. So a flow condition
that holds on the basis but not on the latest state does not drop the cancellation; anything
that has changed in the agreements still applies - an agreement no longer in force, a new
prohibition or hard block, a condition rewritten so that it no longer holds even on the basis
- and withholds it (fail closed). Re-checking against the latest payload instead would drop
exactly the parties most in need of the cancellation; skipping the re-check would disclose
under an agreement that has lapsed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from ..errors import (
    BreachClosed,
    BreachExpired,
    LifecycleConflict,
    NotADipBreach,
    NotAReleaseNotice,
    NoticeCancelled,
    NoticeReleased,
)
from ..isa.engine import Decision, IsaEngine, RecipientDecision
from ..store.values import StoredMessage

#: ``messages.lifecycle`` of an original (stored as NULL) and of each kind of update
ORIGINAL = "original"


class CancelReason(StrEnum):
    """Why a release notice was cancelled: a closed list, so that no free text (and so no
    personal data) travels with a cancellation."""

    exemption_panel_refused = "exemption_panel_refused"
    recalled = "recalled"
    sentence_recalculated = "sentence_recalculated"
    release_deferred = "release_deferred"
    issued_in_error = "issued_in_error"
    other = "other"


@dataclass(frozen=True)
class Transition:
    """One kind of update: the message type it applies to, the states it may start from, the
    root's state afterwards, and its disclosure-log event."""

    lifecycle: str
    message_type: str
    from_states: frozenset[str]
    to_state: str
    audit_event: str


AMEND = Transition(
    "amended", "release-notice", frozenset({"notified", "amended"}), "amended", "message_amended"
)
CANCEL = Transition(
    "cancelled",
    "release-notice",
    frozenset({"notified", "amended"}),
    "cancelled",
    "message_cancelled",
)
CONFIRM_RELEASE = Transition(
    "released",
    "release-notice",
    frozenset({"notified", "amended"}),
    "released",
    "release_confirmed",
)
OUTCOME = Transition("outcome", "dip-breach", frozenset({"open"}), "closed", "breach_outcome")

_WRONG_TYPE: dict[str, type[LifecycleConflict]] = {
    "release-notice": NotAReleaseNotice,
    "dip-breach": NotADipBreach,
}
_WRONG_STATE: dict[str, type[LifecycleConflict]] = {
    "cancelled": NoticeCancelled,
    "released": NoticeReleased,
    "closed": BreachClosed,
    "expired": BreachExpired,
}


def initial_state(message_type: str, payload: Mapping[str, Any]) -> str | None:
    """The ``state`` an original starts in: a release notice ``notified``; a DIP breach
    ``open``, or ``closed`` when it already carries its outcome; other types none."""
    if message_type == "release-notice":
        return "notified"
    if message_type == "dip-breach":
        return "closed" if payload.get("breach", {}).get("outcome") else "open"
    return None


def check_transition(transition: Transition, root: Mapping[str, Any]) -> None:
    """Raise the specific :class:`LifecycleConflict` when ``root`` (its type and current
    state) does not allow ``transition``."""
    if root["message_type"] != transition.message_type:
        raise _WRONG_TYPE[transition.message_type](
            f"message {root['id']!r} is a {root['message_type']}, not a "
            f"{transition.message_type}; only a {transition.message_type} can be "
            f"{transition.lifecycle}"
        )
    state = root.get("state")
    if state not in transition.from_states:
        error = _WRONG_STATE.get(str(state), LifecycleConflict)
        raise error(
            f"message {root['id']!r} is {state}; an update ({transition.lifecycle}) needs it "
            f"to be {' or '.join(sorted(transition.from_states))}"
        )


def cancellation_decision(
    versions: Sequence[Mapping[str, Any]], now: dt.datetime
) -> tuple[Decision, dict[str, str]]:
    """The decision of a cancellation: every party any version's decision included, each with
    its share from the most recent version that included it; and that version's id per party
    (its basis). ``versions``: the chain's rows, oldest first."""
    latest: dict[str, tuple[RecipientDecision, str]] = {}
    for version in versions:
        for rd in Decision.from_dict(version["decision"]).recipients:
            latest[rd.party] = (rd, version["id"])
    root = Decision.from_dict(versions[0]["decision"])
    decision = Decision(
        root.sender,
        root.message_type,
        now,
        tuple(rd for _, (rd, _) in sorted(latest.items())),
        (),
        (),
        root.purposes,
    )
    return decision, {party: vid for party, (_, vid) in sorted(latest.items())}


class MessageReader(Protocol):
    async def get_message(self, message_id: str) -> StoredMessage | None: ...


async def recheck_shares(
    engine: IsaEngine,
    store: MessageReader,
    message: Mapping[str, Any],
    now: dt.datetime,
    *,
    only: str | None = None,
) -> tuple[dict[str, RecipientDecision | str], dict[str, Mapping[str, Any]]]:
    """The re-check the router (at routing) and the dispatcher (before each attempt) make:
    per recipient of ``message`` (a message row, or a due-delivery row carrying the message's
    columns), the share the agreements in force still permit, or why not; and for a
    cancellation, per party, its basis version's row (see the module docstring), whose
    payload and timeliness that party is to be shown. ``only``: re-check one recipient."""
    stored = message["decision"]
    decision = Decision.from_dict(stored)
    basis: dict[str, str] = stored.get("basis") or {}
    if message.get("lifecycle") != CANCEL.lifecycle or not basis:
        return engine.recheck(decision, now, message["payload"]), {}
    groups: dict[str, list[RecipientDecision]] = {}
    for rd in decision.recipients:
        if only is None or rd.party == only:
            groups.setdefault(basis.get(rd.party, ""), []).append(rd)
    current: dict[str, RecipientDecision | str] = {}
    rows: dict[str, Mapping[str, Any]] = {}
    for version_id, rds in sorted(groups.items()):
        version = await store.get_message(version_id) if version_id else None
        if version is None:  # cannot happen while messages are kept; fail closed
            for rd in rds:
                current[rd.party] = f"the version {rd.party} was entitled to is not stored"
            continue
        sub = Decision(
            decision.sender,
            decision.message_type,
            decision.decided_at,
            tuple(rds),
            purposes=decision.purposes,
        )
        current.update(engine.recheck(sub, now, version["payload"]))
        for rd in rds:
            rows[rd.party] = version
    return current, rows


def seen_by(message: Mapping[str, Any], basis: Mapping[str, Any] | None) -> dict[str, Any]:
    """The columns of ``message`` to show a party whose cancellation has ``basis`` (from
    :func:`recheck_shares`): that version's payload and timeliness (with the cancellation's
    reason), so that neither the body nor its extension attributes (a notice period reveals
    the release date) tell the party more than the version it was entitled to. Empty when
    there is no basis (the message's own columns apply)."""
    if basis is None:
        return {}
    timeliness = dict(basis.get("timeliness") or {})
    reason = (message.get("timeliness") or {}).get("reason")
    if reason:
        timeliness["reason"] = reason
    return {"payload": basis["payload"], "timeliness": timeliness}


@dataclass(frozen=True)
class Shown:
    """What one party may be shown of a message now: the share the agreements in force still
    permit it (``permitted``), or why nothing is shown (``withheld``); and the version it is
    shown, ``payload`` and ``timeliness`` (a cancellation's: its basis version's, with the
    cancellation's reason, :func:`seen_by`). Exactly one of ``permitted`` and ``withheld``
    is set."""

    party: str
    permitted: RecipientDecision | None
    withheld: str | None
    payload: dict[str, Any]
    timeliness: dict[str, Any] | None

    @classmethod
    def of(
        cls,
        message: Mapping[str, Any],
        party: str,
        current: Mapping[str, RecipientDecision | str],
        bases: Mapping[str, Mapping[str, Any]],
    ) -> Shown:
        """``party``'s part of a re-check of ``message`` (:func:`recheck_shares`'s answer);
        a party the re-check does not name is withheld."""
        share = current.get(party, f"no agreement in force now shares with {party}")
        columns = seen_by(message, bases.get(party))
        payload = columns.get("payload", message["payload"])
        timeliness = columns.get("timeliness", message.get("timeliness"))
        if isinstance(share, str):
            return cls(party, None, share, payload, timeliness)
        return cls(party, share, None, payload, timeliness)

    def projection(self) -> dict[str, Any] | None:
        """The party's own projection of the version it is shown; None when withheld."""
        return None if self.permitted is None else self.permitted.project(self.payload)

    def disclosed(self) -> list[str]:
        """The fields that projection discloses (none when withheld)."""
        return [] if self.permitted is None else self.permitted.disclosed(self.payload)


async def shown_now(
    engine: IsaEngine,
    store: MessageReader,
    message: Mapping[str, Any],
    party: str,
    now: dt.datetime,
) -> Shown:
    """What ``party`` may be shown of ``message`` (a message row, or a due-delivery row
    carrying the message's columns) at ``now``: its stored decision re-checked against the
    agreements in force, then the version the party is to be shown. The one answer the
    dispatcher (before each attempt) and a recipient reading a message's history both get;
    the router, re-checking every recipient at once, takes each party's with
    :meth:`Shown.of`."""
    current, bases = await recheck_shares(engine, store, message, now, only=party)
    return Shown.of(message, party, current, bases)


def own_version(message: Mapping[str, Any]) -> int:
    """The version a message row IS: 1 for an original (whose ``version`` column carries the
    chain's latest version), an update's own number otherwise."""
    return int(message.get("version") or 1) if message.get("refers_to") else 1


def event_extensions(message: Mapping[str, Any]) -> dict[str, str | int]:
    """CloudEvent extension attributes of a delivered message's lifecycle and timeliness
    (names: lowercase letters, at most 20 characters; values strings or integers, as the
    CloudEvents type system allows). ``message``: a message row, or a due-delivery row
    carrying ``lifecycle``, ``refers_to``, ``version`` and ``timeliness``."""
    out: dict[str, str | int] = {
        "isalifecycle": message.get("lifecycle") or ORIGINAL,
        "isaversion": own_version(message),
    }
    if message.get("refers_to"):
        out["isarefersto"] = str(message["refers_to"])
    timeliness = message.get("timeliness") or {}
    if timeliness.get("notice_days") is not None:
        out["isanoticedays"] = f"{float(timeliness['notice_days']):.2f}"
        out["isashortnotice"] = "true" if timeliness.get("short_notice") else "false"
    if timeliness.get("days_early") is not None:
        out["isadaysearly"] = int(timeliness["days_early"])
    if timeliness.get("reason"):
        out["isacancelreason"] = str(timeliness["reason"])
    return out
