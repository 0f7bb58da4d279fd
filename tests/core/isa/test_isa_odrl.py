"""ODRL 2.2 / DPV export of the agreements (services.core.isa.odrl), on the repo demo set.

pyld is not a dependency, so the JSON-LD is checked for structure: the ODRL terms and
prefixes used, the rules, targets, parties and DPV terms, not by expanding it."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.isa.loader import load_policies
from services.core.isa.model import PolicySet
from services.core.isa.odrl import (
    export_all,
    field_uid,
    legal_bases,
    party_uid,
    purpose_iri,
    to_odrl,
)
from services.core.messages import MESSAGE_TYPES

ODRL_TERMS = {
    "uid", "profile", "conflict", "permission", "prohibition", "assigner", "assignee",
    "action", "target", "constraint", "refinement", "leftOperand", "operator",
    "rightOperand", "partOf",
}  # fmt: skip
ODRL_TYPES = {"Agreement", "Offer", "Party", "PartyCollection", "Asset", "AssetCollection"}
PREFIXES = {"odrl", "rdf", "rdfs", "xsd", "dpv", "dpv-gdpr", "dcterms", "isa"}
DPV_ROLES = {
    "controller": "dpv:DataController",
    "joint-controller": "dpv:DataController",
    "processor": "dpv:DataProcessor",
}


@pytest.fixture(scope="module")
def repo_policies(repo_policies_dir: Path, schemas_dir: Path) -> PolicySet:
    return load_policies(repo_policies_dir, schemas_dir)


@pytest.fixture(scope="module")
def exported(repo_policies: PolicySet) -> dict[str, dict[str, Any]]:
    return export_all(repo_policies)


def _walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _members(target: dict[str, Any]) -> set[str]:
    assert target["@type"] == "AssetCollection"
    assert all(m["partOf"] == target["uid"] for m in target["dcterms:hasPart"])
    return {m["uid"] for m in target["dcterms:hasPart"]}


def _action(rule: dict[str, Any]) -> str:
    action = rule["action"]
    return action if isinstance(action, str) else action[0]["rdf:value"]["@id"]


def _party_members(doc: dict[str, Any], collection: str) -> set[str]:
    return {p["uid"] for p in doc["isa:party"] if collection in p["partOf"]}


def test_every_demo_agreement_exports(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    assert list(exported) == sorted(a.id for a in repo_policies.agreements)
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        assert doc["@context"][0] == "http://www.w3.org/ns/odrl.jsonld"
        assert doc["@context"][1]["dpv"] == "https://w3id.org/dpv#"
        assert doc["@context"][1]["dpv-gdpr"] == "https://w3id.org/dpv/legal/eu/gdpr#"
        assert doc["dcterms:title"] == agreement.title
        assert doc["isa:status"] == agreement.status
        assert doc["isa:type"] == agreement.type
        assert doc["isa:legalGateway"] == sorted(agreement.legal_gateways)
        assert agreement.effective_from.isoformat() in doc["dcterms:valid"]["@value"]
        assert agreement.expires_on.isoformat() in doc["dcterms:valid"]["@value"]
        assert doc["permission"] or doc["prohibition"]  # an ODRL policy has a rule


def test_json_round_trips_and_is_deterministic(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    text = json.dumps(exported)
    assert json.loads(text) == exported
    assert json.dumps(export_all(repo_policies)) == text
    # The order of flows and parties in the source does not change the output.
    for agreement in repo_policies.agreements:
        shuffled = dataclasses.replace(
            agreement,
            flows=tuple(reversed(agreement.flows)),
            hard_blocks=tuple(reversed(agreement.hard_blocks)),
            party_roles=tuple(reversed(agreement.party_roles)),
        )
        assert json.dumps(to_odrl(shuffled, repo_policies.parties)) == json.dumps(
            exported[agreement.id]
        )


def test_uids_are_unique(exported: dict[str, dict[str, Any]]) -> None:
    policies = [doc["uid"] for doc in exported.values()]
    assert len(set(policies)) == len(policies)
    for aid, doc in exported.items():
        assert doc["uid"] == f"urn:isa-broker:agreement:{aid}:{doc['isa:version']}"
        rules = [r["uid"] for r in doc["permission"] + doc["prohibition"]]
        assert len(set(rules)) == len(rules)
        assert not set(rules) & set(policies)
        parties = [p["uid"] for p in doc["isa:party"] + doc["isa:partyCollection"]]
        assert len(set(parties)) == len(parties)


def test_json_ld_uses_only_odrl_terms_and_declared_prefixes(
    exported: dict[str, dict[str, Any]],
) -> None:
    for doc in exported.values():
        body = {k: v for k, v in doc.items() if k != "@context"}
        for key, value in _walk(body):
            if key.startswith("@"):
                assert key in {"@id", "@type", "@value"}
            elif ":" in key:
                assert key.split(":", 1)[0] in PREFIXES, key
            else:
                assert key in ODRL_TERMS, key
            if key == "@type":
                for t in value if isinstance(value, list) else [value]:
                    assert t in ODRL_TYPES or t.split(":", 1)[0] in PREFIXES, t
            if key in {"uid", "@id", "assigner", "assignee", "partOf", "profile"}:
                for iri in value if isinstance(value, list) else [value]:
                    assert isinstance(iri, str)
                    assert re.match(r"^(urn:isa-broker:|https://)", iri) or (
                        iri.split(":", 1)[0] in PREFIXES
                    ), iri
        for rule in doc["permission"] + doc["prohibition"]:
            assert isinstance(rule["target"], dict)  # exactly one target per rule
            assert isinstance(rule["assigner"], str)  # at most one assigner/assignee
            assert isinstance(rule["assignee"], str)
            assert _action(rule) in {"read", "odrl:read"}
            for c in rule.get("constraint", []):
                assert c["operator"] in {"eq", "gteq", "lteq"}
        assert doc["conflict"] == "prohibit"


def test_draft_is_an_offer_and_the_rest_are_agreements(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    kinds = {a.id: a.status for a in repo_policies.agreements}
    assert "draft" in kinds.values()
    for aid, status in kinds.items():
        assert exported[aid]["@type"] == ("Offer" if status == "draft" else "Agreement")


def test_one_permission_per_sender_and_recipient(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        got = {(r["isa:flow"], r["assigner"], r["assignee"]) for r in doc["permission"]}
        want = {
            (f.id, party_uid(s), party_uid(r))
            for f in agreement.flows
            for s in f.senders
            for r in f.recipients
        }
        assert got == want
        assert len(doc["permission"]) == len(want)


def test_every_flow_field_is_a_permission_target(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        for flow in agreement.flows:
            rules = [r for r in doc["permission"] if r["isa:flow"] == flow.id]
            assert rules
            want = {field_uid(mt, p) for mt in flow.message_types for p in flow.fields}
            for rule in rules:
                assert _members(rule["target"]) == want


def test_purposes_and_legal_bases_are_present(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        assert {p["@id"]: p["rdfs:label"] for p in doc["isa:purpose"]} == {
            purpose_iri(k): v for k, v in agreement.purposes.items()
        }
        flows = {f.id: f for f in agreement.flows}
        for rule in doc["permission"]:
            flow = flows[rule["isa:flow"]]
            purpose = [c for c in rule["constraint"] if c["leftOperand"] == "purpose"]
            assert len(purpose) == 1
            assert purpose[0]["operator"] == "eq"
            assert purpose[0]["rightOperand"]["@id"] == purpose_iri(flow.purpose)
            assert purpose[0]["rightOperand"]["rdfs:label"] == agreement.purposes[flow.purpose]
            assert rule["dpv:hasPurpose"]["@id"] == purpose_iri(flow.purpose)
            bases = [b["@id"] for b in rule["dpv:hasLegalBasis"]]
            assert bases
            assert rule["isa:regime"] == flow.legal_regime["regime"]
            if flow.legal_regime["regime"] == "dpa-2018-part-3":
                assert bases == ["isa:DPA2018-Part3"]
                assert rule["isa:legalCondition"] == flow.legal_regime["condition"]
            else:
                assert "dpv-gdpr:A6-1-e" in bases  # every demo UK GDPR flow is public task
                assert rule["isa:article6"] == flow.legal_regime["article_6"]
            dates = {
                c["operator"]: c["rightOperand"]["@value"]
                for c in rule["constraint"]
                if c["leftOperand"] == "dateTime"
            }
            assert dates == {
                "gteq": agreement.effective_from.isoformat(),
                "lteq": agreement.expires_on.isoformat(),
            }


def test_special_category_condition_maps_to_article_9(
    exported: dict[str, dict[str, Any]],
) -> None:
    rule = next(
        r
        for r in exported["ISA-EB-030"]["permission"]
        if r["isa:flow"] == "dip-breach-to-treatment"
    )
    assert [b["@id"] for b in rule["dpv:hasLegalBasis"]] == ["dpv-gdpr:A6-1-e", "dpv-gdpr:A9-2-h"]


@pytest.mark.parametrize(
    ("legal_regime", "bases"),
    [
        ({"regime": "uk-gdpr", "article_6": "6(1)(e) public task"}, ["dpv-gdpr:A6-1-e"]),
        ({"regime": "uk-gdpr", "article_6": "Art 6(1)(c) legal obligation"}, ["dpv-gdpr:A6-1-c"]),
        (
            {"regime": "uk-gdpr", "article_6": "6 (1) (E)", "condition": "Article 9(2)(g); Sch 1"},
            ["dpv-gdpr:A6-1-e", "dpv-gdpr:A9-2-g"],
        ),
        (
            {"regime": "uk-gdpr", "article_6": "6(1)(e)", "condition": "Art 10; Sch 1 para 18"},
            ["dpv-gdpr:A6-1-e"],
        ),
        ({"regime": "uk-gdpr", "article_6": "public task"}, ["isa:UK-GDPR-Article6"]),
        ({"regime": "dpa-2018-part-3", "condition": "s35(2)(b)"}, ["isa:DPA2018-Part3"]),
    ],
)
def test_legal_basis_mapping(legal_regime: dict[str, str], bases: list[str]) -> None:
    assert legal_bases(legal_regime) == bases


def test_cel_condition_is_kept_verbatim_as_a_refinement(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    seen = 0
    for agreement in repo_policies.agreements:
        flows = {f.id: f for f in agreement.flows}
        for rule in exported[agreement.id]["permission"]:
            flow = flows[rule["isa:flow"]]
            if flow.condition is None:
                assert rule["action"] == "read"
                continue
            seen += 1
            (action,) = rule["action"]
            assert action["rdf:value"] == {"@id": "odrl:read"}
            (refinement,) = action["refinement"]
            assert refinement["leftOperand"] == "isa:condition"
            assert refinement["rightOperand"] == {"@value": flow.condition, "@type": "isa:CEL"}
    assert seen


def test_flow_prohibited_fields_are_prohibitions(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    seen = 0
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        for flow in agreement.flows:
            rules = [r for r in doc["prohibition"] if r.get("isa:flow") == flow.id]
            if not flow.prohibited:
                assert not rules
                continue
            seen += 1
            assert {(r["assigner"], r["assignee"]) for r in rules} == {
                (party_uid(s), party_uid(r)) for s in flow.senders for r in flow.recipients
            }
            want = {field_uid(mt, p) for mt in flow.message_types for p in flow.prohibited}
            for rule in rules:
                assert _members(rule["target"]) == want
    assert seen


def test_every_hard_block_is_a_prohibition(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    seen = 0
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        for block in agreement.hard_blocks:
            seen += 1
            (rule,) = [r for r in doc["prohibition"] if r.get("isa:hardBlock") == block.id]
            assert rule["isa:reason"] == block.reason
            assert _action(rule) == "read"
            assert "constraint" not in rule  # blocks hold whatever the dates
            assert _party_members(doc, rule["assignee"]) == {party_uid(p) for p in block.parties}
            assert _party_members(doc, rule["assigner"]) == {
                party_uid(p) for p in agreement.parties
            }
            targets = _members(rule["target"])
            paths = {t.rsplit(":", 1)[1] for t in targets}
            assert paths == set(block.fields)
            for t in targets:
                mt, path = t.removeprefix("urn:isa-broker:field:").split(":")
                assert path in MESSAGE_TYPES[mt].paths
    assert seen


def test_parties_carry_their_dpv_roles(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    for agreement in repo_policies.agreements:
        doc = exported[agreement.id]
        nodes = {p["uid"]: p for p in doc["isa:party"]}
        for role in agreement.party_roles:
            node = nodes[party_uid(role.id)]
            assert node["@type"] == ["Party", DPV_ROLES[role.role]]
            assert node["isa:role"] == role.role
            assert node["rdfs:label"] == repo_policies.parties[role.id].name
        joint = {party_uid(r.id) for r in agreement.party_roles if r.role == "joint-controller"}
        groups = [c for c in doc["isa:partyCollection"] if "dpv:JointDataControllers" in c["@type"]]
        if joint:
            (group,) = groups
            assert _party_members(doc, group["uid"]) == joint
        else:
            assert not groups
    eb030 = {p["uid"]: p for p in exported["ISA-EB-030"]["isa:party"]}
    assert "dpv:DataProcessor" in eb030[party_uid("eastborough-recovery")]["@type"]
    assert exported["ISA-EB-010"]["isa:supersedes"] == {
        "@id": "urn:isa-broker:agreement:ISA-EB-010:2.0"
    }


def test_retention_is_on_permissions_to_that_recipient(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    for agreement in repo_policies.agreements:
        for rule in exported[agreement.id]["permission"]:
            recipient = rule["assignee"].removeprefix("urn:isa-broker:party:")
            if recipient in agreement.retention:
                assert rule["isa:retention"] == {
                    "@value": agreement.retention[recipient],
                    "@type": "xsd:duration",
                }
            else:
                assert "isa:retention" not in rule
    iom = [
        r
        for r in exported["ISA-EB-010"]["permission"]
        if r["assignee"] == party_uid("eastborough-police-iom")
    ]
    assert iom
    assert {r["isa:retention"]["@value"] for r in iom} == {"P2Y"}


def test_no_personal_data_or_contacts_in_the_export(
    repo_policies: PolicySet, exported: dict[str, dict[str, Any]]
) -> None:
    strings = set(_strings(exported))
    assert not [s for s in strings if re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", s)]
    for agreement in repo_policies.agreements:
        for contact in agreement.breach_contacts:
            assert contact["contact"] not in strings
    # Field targets name paths in the message types, never values.
    for doc in exported.values():
        for rule in doc["permission"] + doc["prohibition"]:
            for target in _members(rule["target"]):
                mt, path = target.removeprefix("urn:isa-broker:field:").split(":")
                assert path in MESSAGE_TYPES[mt].paths
