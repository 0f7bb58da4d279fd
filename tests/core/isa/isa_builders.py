"""Small builders for in-memory ISA policy sets (format v2), shared by the engine tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from typing import Any

import cel
import pytest

from services.core.errors import Forbidden, SharingRefused
from services.core.isa import Agreement, Flow, IsaEngine, Party, PolicySet
from services.core.isa.model import AgreementParty, HardBlock
from services.core.messages import MESSAGE_TYPES

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
TODAY = NOW.date()

UK_GDPR = {"regime": "uk-gdpr", "article_6": "6(1)(e) public task"}


def release(index: int = 0) -> dict[str, Any]:
    """A schema example of a release notice in canonical (validated) form."""
    mt = MESSAGE_TYPES["release-notice"]
    extra = mt.model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    return mt.validate_json(json.dumps(extra["examples"][index]).encode())


def canonical(message_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return MESSAGE_TYPES[message_type].validate_json(json.dumps(body).encode())


def flow(
    id: str = "f1",
    senders: Iterable[str] = ("a",),
    recipients: Iterable[str] = ("b",),
    message_types: Iterable[str] = ("release-notice",),
    purpose: str = "p",
    fields: Iterable[str] = ("person",),
    prohibited: Iterable[str] = (),
    condition: str | None = None,
) -> Flow:
    return Flow(
        id=id,
        senders=frozenset(senders),
        recipients=frozenset(recipients),
        message_types=frozenset(message_types),
        purpose=purpose,
        fields=frozenset(fields),
        prohibited=frozenset(prohibited),
        condition=condition,
        legal_regime=dict(UK_GDPR),
        program=cel.compile(condition) if condition else None,
    )


def hard_block(
    id: str = "hb1",
    fields: Iterable[str] = ("person.date_of_birth",),
    parties: Iterable[str] = ("b",),
    reason: str = "never to b",
    message_types: Iterable[str] = (),
) -> HardBlock:
    return HardBlock(
        id=id,
        fields=frozenset(fields),
        parties=frozenset(parties),
        reason=reason,
        message_types=frozenset(message_types),
    )


def agreement(
    *flows: Flow,
    id: str = "ISA-T-001",
    version: str = "1.0",
    status: str = "active",
    parties: Iterable[str] | None = None,
    effective_from: dt.date = dt.date(2025, 1, 1),
    expires_on: dt.date = dt.date(2027, 12, 31),
    review_date: dt.date | None = None,
    hard_blocks: Iterable[HardBlock] = (),
) -> Agreement:
    members = (
        frozenset(parties)
        if parties is not None
        else frozenset(p for f in flows for p in f.senders | f.recipients)
    )
    return Agreement(
        id=id,
        title=f"Test agreement {id}",
        version=version,
        status=status,
        parties=members,
        purposes={f.purpose: "a purpose" for f in flows},
        legal_gateways=("Crime and Disorder Act 1998 s115",),
        effective_from=effective_from,
        expires_on=expires_on,
        flows=tuple(flows),
        review_date=review_date,
        party_roles=tuple(AgreementParty(p, "controller", False) for p in sorted(members)),
        data_subjects=("people released on licence",),
        hard_blocks=tuple(hard_blocks),
    )


def policy_set(
    *agreements: Agreement,
    kinds: Mapping[str, str] | None = None,
    areas: Mapping[str, str] | None = None,
) -> PolicySet:
    """A register naming every party of the agreements (and a, b, c), of kind ``other``
    unless ``kinds`` says otherwise."""
    kinds = kinds or {}
    areas = areas or {}
    ids = {p for a in agreements for p in a.parties} | {"a", "b", "c"} | set(kinds)
    return PolicySet(
        parties={
            p: Party(id=p, name=p.title(), kind=kinds.get(p, "other"), area=areas.get(p))
            for p in sorted(ids)
        },
        agreements=tuple(agreements),
    )


def replace_flow(a: Agreement, flow_id: str, **changes: Any) -> Agreement:
    return dataclasses.replace(
        a, flows=tuple(dataclasses.replace(f, **changes) if f.id == flow_id else f for f in a.flows)
    )


def with_agreement(policies: PolicySet, new: Agreement) -> PolicySet:
    return dataclasses.replace(
        policies, agreements=tuple(new if a.id == new.id else a for a in policies.agreements)
    )


def without_agreement(policies: PolicySet, agreement_id: str) -> PolicySet:
    return dataclasses.replace(
        policies, agreements=tuple(a for a in policies.agreements if a.id != agreement_id)
    )


def refusal(engine: IsaEngine, sender: str, mt: str, **kw: Any) -> SharingRefused:
    with pytest.raises(SharingRefused) as info:
        engine.decide(sender, mt, kw.pop("now", NOW), **kw)
    assert isinstance(info.value, Forbidden)
    assert info.value.status == 403
    assert info.value.extra["reason"] == info.value.reason
    return info.value
