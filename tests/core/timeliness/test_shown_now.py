"""What one party is shown of a message now (:class:`Shown`), from a re-check's answer: its
own projection of the message, or of its basis version for a cancellation (with the
cancellation's reason); withheld, with the reason, when the re-check withholds it or does not
name it. Pure: the store is read only by :func:`shown_now`, which the gateway and the
dispatcher call and their own tests exercise."""

from __future__ import annotations

from typing import Any

from services.core.isa.engine import Grant, RecipientDecision
from services.core.timeliness.lifecycle import Shown

SHARE = RecipientDecision(
    "housing", (Grant("ISA-T-001", "1.0", "f1", "resettlement", ("release.date",)),)
)
LATEST: dict[str, Any] = {
    "id": "m3",
    "payload": {"release": {"date": "2026-12-03", "address": "new"}},
    "timeliness": {"notice_days": 5.0, "reason": "recalled"},
}
BASIS: dict[str, Any] = {
    "id": "m1",
    "payload": {"release": {"date": "2026-12-01", "address": "old"}},
    "timeliness": {"notice_days": 9.0},
}


def test_a_permitted_party_is_shown_its_projection_of_the_message() -> None:
    shown = Shown.of(LATEST, "housing", {"housing": SHARE}, {})
    assert shown.permitted is SHARE and shown.withheld is None
    assert shown.payload is LATEST["payload"]
    assert shown.timeliness == LATEST["timeliness"]
    assert shown.projection() == {"release": {"date": "2026-12-03"}}
    assert shown.disclosed() == ["release.date"]


def test_a_cancellation_shows_the_basis_version_with_the_cancellations_reason() -> None:
    shown = Shown.of(LATEST, "housing", {"housing": SHARE}, {"housing": BASIS})
    assert shown.payload is BASIS["payload"]
    assert shown.timeliness == {"notice_days": 9.0, "reason": "recalled"}
    assert shown.projection() == {"release": {"date": "2026-12-01"}}


def test_a_withheld_party_is_told_why_and_shown_nothing() -> None:
    withheld = Shown.of(LATEST, "housing", {"housing": "ISA-T-001 v1.0 expired"}, {})
    assert withheld.permitted is None and withheld.withheld == "ISA-T-001 v1.0 expired"
    assert withheld.projection() is None and withheld.disclosed() == []
    absent = Shown.of(LATEST, "vawg", {"housing": SHARE}, {})
    assert absent.withheld == "no agreement in force now shares with vawg"
