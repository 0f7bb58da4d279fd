"""``GET /v1/decisions/{message_id}``: the decision behind a message, field by field, for its
sender and for information governance officers (scope ``ig:audit``). Anyone else gets 404."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from services.core.errors import NotFound
from services.core.isa.engine import Decision
from services.core.scopes import IG_AUDIT_SCOPE

from .deps import CurrentAgency, RuntimeDep, needs_scope

router = APIRouter(tags=["decisions"])


class RecipientExplained(BaseModel):
    party: str
    fields: dict[str, dict[str, Any]] = Field(
        description="Every field of the message: disclosed with the grants that allowed it, "
        "or withheld with the rule that withheld it"
    )
    grants: list[dict[str, Any]]
    withheld: list[dict[str, Any]]
    delivery: list[dict[str, Any]] = Field(description="Outcome per delivery so far")


class DecisionPublic(BaseModel):
    message_id: str
    message_type: str
    sender: str
    decided_at: dt.datetime
    purposes: list[str]
    status: str
    recipients: list[RecipientExplained]
    not_applied: list[dict[str, Any]]
    warnings: list[str]
    withheld_at_delivery: list[dict[str, Any]]


MessageId = Annotated[str, Path(max_length=64)]


@router.get(
    "/v1/decisions/{message_id}",
    response_model=DecisionPublic,
    responses={404: {"description": "No such message visible to the caller"}},
    dependencies=[needs_scope("decisions:read", IG_AUDIT_SCOPE)],
)
async def get_decision(
    message_id: MessageId, runtime: RuntimeDep, agency: CurrentAgency
) -> DecisionPublic:
    is_ig = IG_AUDIT_SCOPE in agency.scopes
    message = await runtime.store.get_message(message_id)
    if message is None or not (is_ig or message["sender"] == agency.party):
        raise NotFound(f"no message {message_id!r}")
    decision = Decision.from_dict(message["decision"])
    payload = message["payload"]
    deliveries = await runtime.store.list_deliveries(message_id=message_id)
    by_party: dict[str, list[dict[str, Any]]] = {}
    for d in deliveries:
        by_party.setdefault(d["recipient"], []).append(
            {
                "delivery_id": d["id"],
                "channel": d["channel"],
                "status": d["status"],
                "attempts": d["attempts"],
                "fields": d["fields"],
            }
        )
    entries = await runtime.store.audit_entries(message_id)
    withheld = [
        {"recipient": e["recipient"], "at": e["at"], "reason": e["detail"].get("reason", "")}
        for e in entries
        if e["event"] == "withheld"
    ]
    await runtime.store.audit(
        "decision_read",
        message_id=message_id,
        actor=agency.party,
        detail={"client_id": agency.client_id, "as_ig": is_ig},
    )
    return DecisionPublic(
        message_id=message_id,
        message_type=decision.message_type,
        sender=decision.sender,
        decided_at=decision.decided_at,
        purposes=list(decision.purposes),
        status=message["status"],
        recipients=[
            RecipientExplained(
                party=r.party,
                fields=r.explain(payload),
                grants=[g.to_dict() for g in r.grants],
                withheld=[b.to_dict() for b in r.blocks],
                delivery=by_party.get(r.party, []),
            )
            for r in decision.recipients
        ],
        not_applied=[c.to_dict() for c in decision.considered],
        warnings=list(decision.warnings),
        withheld_at_delivery=withheld,
    )
