"""Export agreements as ODRL 2.2 policies in JSON-LD, described with DPV terms.

One agreement becomes one ODRL ``Agreement`` (an ``Offer`` while it is a draft). The export
is documentation for other systems and auditors; the broker itself decides with
:mod:`.engine`, never from this form.

The mapping, per the W3C ODRL Information Model 2.2 and ODRL Vocabulary 2.2:

* Parties are ``urn:isa-broker:party:<id>``, listed once under ``isa:party`` with their DPV
  role: ``dpv:DataController`` or ``dpv:DataProcessor``. ``dpv:JointDataControllers`` is the
  DPV class of a *group* of controllers, so joint controllers are each a
  ``dpv:DataController`` and ``partOf`` one ``PartyCollection`` that is typed
  ``dpv:JointDataControllers``.
* Each flow gives one permission per (sender, recipient): ODRL 2.2 gives a Rule at most one
  ``assigner`` and one ``assignee``. The sender is the assigner, the recipient the assignee.
* The action is ``odrl:read``, "to obtain data from the Asset". In ODRL the *assignee*
  exercises a rule's action, and here the assignee is the recipient: ``distribute`` ("to
  supply the Asset to third-parties") would grant the recipient onward disclosure, and
  ``transfer`` is a transfer of ownership, which no flow makes (both sides stay controllers).
  ``use`` would include ``distribute``. What a flow lets the recipient do is obtain these
  fields of the message, so permissions and every prohibition use ``read``; one action for
  all rules also lets an ODRL evaluator see a hard block conflict with a permission, and
  ``conflict: prohibit`` makes the prohibition win, as the engine does.
* The target is an ``AssetCollection`` of ``urn:isa-broker:field:<message-type>:<path>``,
  each member ``partOf`` the collection (a path names the whole sub-tree under it).
* Constraints: ``purpose eq isa:purpose/<id>`` (also ``dpv:hasPurpose``), and ``dateTime``
  between the effective and expiry dates. The legal regime is ``dpv:hasLegalBasis``.
* A flow's CEL condition is kept verbatim as a refinement of the action with the
  profile-defined left operand ``isa:condition``: ODRL has no operand or operator that
  evaluates an expression over the content of a message and the sender's and recipient's
  attributes, so it cannot be expressed in ODRL itself. An evaluator that does not know
  the ``isa`` profile cannot satisfy it, so it will not read the permission as unconditional.
* Retention is ``isa:retention`` (an ``xsd:duration``) on each permission to that
  recipient, not an ODRL duty: a permission's duty is a pre-condition of exercising it
  (ODRL IM 2.2 section 2.6.5), and deletion comes after receipt.
* Flow ``prohibited_fields`` and hard blocks are prohibitions. A hard block's assignee is a
  ``PartyCollection`` of the blocked parties and its assigner the collection of the
  agreement's parties. Hard blocks apply whatever the dates (the engine applies them for
  every agreement that is not a draft), so they have no ``dateTime`` constraint.

The status (``isa:status``) cannot be an ODRL constraint: a suspended, expired or terminated
agreement shares nothing, whatever the rules say.

The output is plain JSON (dicts, lists, strings, booleans), built in a fixed order with
every list sorted, so that the same agreement always gives the same bytes. It holds no
personal data: agreements describe fields and parties, never message values, and
signatories and breach contacts are not exported."""

from __future__ import annotations

import re
from typing import Any

from ..messages import MESSAGE_TYPES
from .model import Agreement, Flow, HardBlock, Party, PolicySet, parse_agreement_ref

Node = dict[str, Any]

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
PREFIXES: dict[str, str] = {
    "dpv": "https://w3id.org/dpv#",
    "dpv-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
    "dcterms": "http://purl.org/dc/terms/",
    "isa": "https://isa-broker.example/ns#",
}
PROFILE = "https://isa-broker.example/ns"
ACTION = "read"  # odrl:read; why not distribute or transfer: see the module docstring

DPV_ROLE = {
    "controller": "dpv:DataController",
    "joint-controller": "dpv:DataController",  # and partOf the dpv:JointDataControllers group
    "processor": "dpv:DataProcessor",
}
PART_3_BASIS = "isa:DPA2018-Part3"
UK_GDPR_FALLBACK_BASIS = "isa:UK-GDPR-Article6"

# "6(1)(e) public task", "Art 9(2)(h) health or social care": article, paragraph, point.
_ARTICLE_6 = re.compile(r"(?<![0-9])6\s*\(\s*1\s*\)\s*\(\s*([a-f])\s*\)", re.IGNORECASE)
_ARTICLE_9 = re.compile(r"\bArt(?:icle)?\.?\s*9\s*\(\s*2\s*\)\s*\(\s*([a-j])\s*\)", re.IGNORECASE)


def agreement_uid(agreement_id: str, version: str | None = None) -> str:
    base = f"urn:isa-broker:agreement:{agreement_id}"
    return f"{base}:{version}" if version else base


def party_uid(party_id: str) -> str:
    return f"urn:isa-broker:party:{party_id}"


def field_uid(message_type: str, path: str) -> str:
    return f"urn:isa-broker:field:{message_type}:{path}"


def purpose_iri(purpose_id: str) -> str:
    return f"isa:purpose/{purpose_id}"


def _date(value: Any) -> Node:
    return {"@value": value.isoformat(), "@type": "xsd:date"}


def _in_force(operator: str, day: Any) -> Node:
    return {"leftOperand": "dateTime", "operator": operator, "rightOperand": _date(day)}


def _by_uid(nodes: list[Node]) -> list[Node]:
    return sorted(nodes, key=lambda n: str(n.get("uid", n.get("@id", ""))))


def _asset_collection(uid: str, fields: dict[str, list[str]]) -> Node:
    """``fields``: message type -> field paths."""
    members = sorted(field_uid(mt, p) for mt, paths in fields.items() for p in paths)
    return {
        "uid": uid,
        "@type": "AssetCollection",
        "dcterms:hasPart": [{"uid": m, "@type": "Asset", "partOf": uid} for m in members],
    }


def _flow_fields(flow: Flow, paths: frozenset[str]) -> dict[str, list[str]]:
    return {mt: sorted(paths) for mt in sorted(flow.message_types)}


def _block_fields(block: HardBlock) -> dict[str, list[str]]:
    """The message types a block names, or else every type that has one of its fields."""
    if block.message_types:
        return {mt: sorted(block.fields) for mt in sorted(block.message_types)}
    out: dict[str, list[str]] = {}
    for mt in sorted(MESSAGE_TYPES):
        paths = sorted(p for p in block.fields if p in MESSAGE_TYPES[mt].paths)
        if paths:
            out[mt] = paths
    return out


def _purpose(agreement: Agreement, purpose_id: str) -> Node:
    return {
        "@id": purpose_iri(purpose_id),
        "@type": "dpv:Purpose",
        "rdfs:label": agreement.purposes.get(purpose_id, purpose_id),
    }


def legal_bases(legal_regime: dict[str, str]) -> list[str]:
    """DPV legal-basis IRIs for a flow's ``legal_regime``.

    UK GDPR keeps the EU GDPR's article numbers, so ``6(1)(e)`` is ``dpv-gdpr:A6-1-e`` and an
    ``Art 9(2)(h)`` condition ``dpv-gdpr:A9-2-h``. Art 10 and DPA 2018 Schedule 1 conditions
    have no DPV term; their text is kept as ``isa:legalCondition``. Part 3 processing (law
    enforcement) is outside UK GDPR and is ``isa:DPA2018-Part3``."""
    regime = legal_regime.get("regime", "")
    if regime == "dpa-2018-part-3":
        return [PART_3_BASIS]
    bases: set[str] = set()
    article_6 = _ARTICLE_6.search(legal_regime.get("article_6", ""))
    if article_6:
        bases.add(f"dpv-gdpr:A6-1-{article_6.group(1).lower()}")
    else:
        bases.add(UK_GDPR_FALLBACK_BASIS)
    for point in _ARTICLE_9.findall(legal_regime.get("condition", "")):
        bases.add(f"dpv-gdpr:A9-2-{point.lower()}")
    return sorted(bases)


def _legal(flow: Flow) -> Node:
    out: Node = {
        "dpv:hasLegalBasis": [{"@id": b} for b in legal_bases(flow.legal_regime)],
        "isa:regime": flow.legal_regime.get("regime", ""),
    }
    if "article_6" in flow.legal_regime:
        out["isa:article6"] = flow.legal_regime["article_6"]
    if "condition" in flow.legal_regime:
        out["isa:legalCondition"] = flow.legal_regime["condition"]
    return out


def _action(condition: str | None) -> Any:
    if condition is None:
        return ACTION
    return [
        {
            "rdf:value": {"@id": f"odrl:{ACTION}"},
            "refinement": [
                {
                    "leftOperand": "isa:condition",
                    "operator": "eq",
                    "rightOperand": {"@value": condition, "@type": "isa:CEL"},
                    "rdfs:comment": "CEL over message, sender and recipient; satisfied when "
                    "it evaluates to true. ODRL cannot express this condition.",
                }
            ],
        }
    ]


def _permission(agreement: Agreement, policy: str, flow: Flow, sender: str, recipient: str) -> Node:
    rule: Node = {
        "uid": f"{policy}:flow:{flow.id}:from:{sender}:to:{recipient}",
        "isa:flow": flow.id,
        "assigner": party_uid(sender),
        "assignee": party_uid(recipient),
        "action": _action(flow.condition),
        "target": _asset_collection(
            f"{policy}:flow:{flow.id}:fields", _flow_fields(flow, flow.fields)
        ),
        "constraint": [
            {
                "leftOperand": "purpose",
                "operator": "eq",
                "rightOperand": _purpose(agreement, flow.purpose),
            },
            _in_force("gteq", agreement.effective_from),
            _in_force("lteq", agreement.expires_on),
        ],
        "dpv:hasPurpose": _purpose(agreement, flow.purpose),
        "isa:messageType": sorted(flow.message_types),
        **_legal(flow),
    }
    if flow.description:
        rule["dcterms:description"] = flow.description
    if recipient in agreement.retention:
        rule["isa:retention"] = {"@value": agreement.retention[recipient], "@type": "xsd:duration"}
    return rule


def _flow_prohibition(policy: str, flow: Flow, sender: str, recipient: str) -> Node:
    return {
        "uid": f"{policy}:flow:{flow.id}:from:{sender}:to:{recipient}:prohibited",
        "isa:flow": flow.id,
        "assigner": party_uid(sender),
        "assignee": party_uid(recipient),
        "action": ACTION,
        "target": _asset_collection(
            f"{policy}:flow:{flow.id}:prohibited-fields", _flow_fields(flow, flow.prohibited)
        ),
        "isa:messageType": sorted(flow.message_types),
    }


def _block_prohibition(policy: str, block: HardBlock) -> Node:
    rule: Node = {
        "uid": f"{policy}:hard-block:{block.id}",
        "isa:hardBlock": block.id,
        "isa:reason": block.reason,
        "assigner": f"{policy}:parties",
        "assignee": f"{policy}:hard-block:{block.id}:never-to",
        "action": ACTION,
        "target": _asset_collection(f"{policy}:hard-block:{block.id}:fields", _block_fields(block)),
    }
    if block.message_types:
        rule["isa:messageType"] = sorted(block.message_types)
    return rule


def _parties(agreement: Agreement, parties: dict[str, Party], policy: str) -> tuple[Node, Node]:
    """``isa:party`` (every party the policy names) and ``isa:partyCollection``."""
    collections: list[Node] = [
        {
            "uid": f"{policy}:parties",
            "@type": "PartyCollection",
            "rdfs:label": f"The parties to {agreement.id} v{agreement.version}",
        }
    ]
    member_of: dict[str, set[str]] = {p: {f"{policy}:parties"} for p in agreement.parties}
    roles = {r.id: r for r in agreement.party_roles}
    if any(r.role == "joint-controller" for r in roles.values()):
        collections.append(
            {
                "uid": f"{policy}:joint-controllers",
                "@type": ["PartyCollection", "dpv:JointDataControllers"],
                "rdfs:label": f"The joint controllers under {agreement.id} v{agreement.version}",
            }
        )
        for r in roles.values():
            if r.role == "joint-controller":
                member_of[r.id].add(f"{policy}:joint-controllers")
    for block in agreement.hard_blocks:
        uid = f"{policy}:hard-block:{block.id}:never-to"
        collections.append(
            {
                "uid": uid,
                "@type": "PartyCollection",
                "rdfs:label": f"Parties that {block.id} keeps its fields from",
            }
        )
        for p in block.parties:
            member_of.setdefault(p, set()).add(uid)
    nodes: list[Node] = []
    for pid in sorted(member_of):
        party = parties.get(pid)
        role = roles.get(pid)
        node: Node = {
            "uid": party_uid(pid),
            "@type": ["Party", DPV_ROLE[role.role]] if role else "Party",
            "rdfs:label": party.name if party else pid,
        }
        if party:
            node["isa:kind"] = party.kind
            if party.area:
                node["isa:area"] = party.area
        if role:
            node["isa:role"] = role.role
            node["isa:competentAuthority"] = role.competent_authority
        node["partOf"] = sorted(member_of[pid])
        nodes.append(node)
    return {"isa:party": nodes}, {"isa:partyCollection": _by_uid(collections)}


def to_odrl(agreement: Agreement, parties: dict[str, Party]) -> dict[str, Any]:
    """One agreement as an ODRL 2.2 ``Agreement`` (``Offer`` while a draft) in JSON-LD."""
    policy = agreement_uid(agreement.id, agreement.version)
    permissions: list[Node] = []
    prohibitions: list[Node] = []
    for flow in agreement.flows:
        for sender in sorted(flow.senders):
            for recipient in sorted(flow.recipients):
                permissions.append(_permission(agreement, policy, flow, sender, recipient))
                if flow.prohibited:
                    prohibitions.append(_flow_prohibition(policy, flow, sender, recipient))
    prohibitions.extend(_block_prohibition(policy, b) for b in agreement.hard_blocks)
    party_nodes, collections = _parties(agreement, parties, policy)

    doc: Node = {
        "@context": [ODRL_CONTEXT, dict(PREFIXES)],
        "@type": "Offer" if agreement.status == "draft" else "Agreement",
        "uid": policy,
        "profile": PROFILE,
        "conflict": "prohibit",
        "dcterms:identifier": agreement.id,
        "dcterms:title": agreement.title,
        "dcterms:valid": {
            "@value": f"start={agreement.effective_from.isoformat()}; "
            f"end={agreement.expires_on.isoformat()}; scheme=W3C-DTF",
            "@type": "dcterms:Period",
        },
        "isa:version": agreement.version,
        "isa:status": agreement.status,
        "isa:type": agreement.type,
        "isa:legalGateway": sorted(agreement.legal_gateways),
        "isa:purpose": [_purpose(agreement, p) for p in sorted(agreement.purposes)],
    }
    if agreement.supersedes:
        sid, sversion = parse_agreement_ref(agreement.supersedes)
        doc["isa:supersedes"] = {"@id": agreement_uid(sid, sversion or None)}
    if agreement.review_date is not None:
        doc["isa:reviewDate"] = _date(agreement.review_date)
    if agreement.dpia_reference:
        doc["isa:dpiaReference"] = agreement.dpia_reference
    doc.update(party_nodes)
    doc.update(collections)
    doc["permission"] = _by_uid(permissions)
    doc["prohibition"] = _by_uid(prohibitions)
    return doc


def export_all(policies: PolicySet) -> dict[str, dict[str, Any]]:
    """Every agreement of ``policies`` as ODRL, keyed by agreement id in id order."""
    return {
        a.id: to_odrl(a, policies.parties) for a in sorted(policies.agreements, key=lambda a: a.id)
    }
