"""Loading and cross-checking the register of parties and the agreement files."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.errors import (
    AgreementFileInvalid,
    ConfigurationError,
    FictionalPolicies,
    PartyRegisterInvalid,
)
from services.core.isa.loader import load_parties, load_policies
from services.core.isa.model import PolicySet

Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture
def policies_copy(tmp_path: Path, policies_dir: Path) -> Path:
    target = tmp_path / "isa_policies"
    shutil.copytree(policies_dir, target)
    return target


def _edit(policies: Path, file: str, mutate: Mutation) -> Path:
    path = policies / file
    doc = yaml.safe_load(path.read_text())
    mutate(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _refused(
    policies: Path, schemas_dir: Path, error: type[Exception] = AgreementFileInvalid
) -> str:
    with pytest.raises(error) as info:
        load_policies(policies, schemas_dir)
    assert isinstance(info.value, ConfigurationError)
    return str(info.value)


# --- the real policies ------------------------------------------------------------------


def test_demo_policies_load(demo_policies: PolicySet) -> None:
    assert sorted(demo_policies.parties) == [
        "eastborough-housing",
        "eastborough-pdu",
        "eastborough-police-dip",
        "eastborough-police-iom",
        "eastborough-recovery",
        "eastborough-vawg",
        "hmp-northgate",
        "westshire-youth-justice",
    ]
    assert [a.id for a in demo_policies.agreements] == ["ISA-EB-001", "ISA-EB-002", "ISA-WS-003"]


def test_demo_agreement_is_parsed_faithfully(demo_policies: PolicySet) -> None:
    eb1 = demo_policies.agreement("ISA-EB-001")
    assert eb1 is not None
    assert eb1.version == "2.1"
    assert eb1.status == "active"
    assert eb1.source == "ISA-EB-001.yaml"
    assert eb1.ref == "ISA-EB-001@2.1"
    assert eb1.effective_from == dt.date(2025, 4, 1)
    assert eb1.expires_on == dt.date(2028, 3, 31)
    assert eb1.review_date == dt.date(2027, 4, 1)
    assert "eastborough-vawg" not in eb1.parties
    assert set(eb1.purposes) == {
        "offender-management",
        "public-protection",
        "resettlement",
        "continuity-of-care",
        "dip-enforcement",
    }
    assert eb1.legal_gateways[0] == "Crime and Disorder Act 1998 s115"
    assert eb1.type == "information-sharing-protocol"
    assert eb1.supersedes is None
    assert eb1.data_subjects == (
        "people in custody or on licence",
        "people tested positive on arrest",
    )
    assert eb1.data_items["licence-recall"] == {
        "person": "personal",
        "recall": "personal",
        "risk": "personal",
    }
    assert [(r.id, r.role) for r in eb1.party_roles][:2] == [
        ("hmp-northgate", "controller"),
        ("eastborough-pdu", "controller"),
    ]
    # competent_authority defaults to the register's value.
    roles = {r.id: r.competent_authority for r in eb1.party_roles}
    assert roles["eastborough-pdu"] is True
    assert roles["eastborough-housing"] is False
    assert eb1.signatories[0] == {
        "party": "hmp-northgate",
        "role": "Governor",
        "signed_on": "2025-03-10",
    }
    assert (eb1.retention, eb1.hard_blocks, eb1.breach_contacts, eb1.dpia_reference) == (
        {},
        (),
        (),
        None,
    )
    housing = next(f for f in eb1.flows if f.id == "release-to-housing")
    assert housing.senders == {"hmp-northgate"}
    assert housing.recipients == {"eastborough-housing"}
    assert housing.message_types == {"release-notice"}
    assert housing.purpose == "resettlement"
    assert "resettlement_needs.accommodation" in housing.fields
    assert "risk" not in housing.fields
    assert housing.description.startswith("Housing receives")
    assert housing.legal_regime == {
        "regime": "uk-gdpr",
        "article_6": "6(1)(e) public task",
        "condition": "Art 10, DPA 2018 Sch 1 para 10",
    }
    assert (housing.prohibited, housing.condition, housing.program) == (frozenset(), None, None)
    recall = next(f for f in eb1.flows if f.id == "recall-to-police-and-prison")
    assert recall.recipients == {"eastborough-police-iom", "hmp-northgate"}


def test_demo_parties(demo_policies: PolicySet) -> None:
    pdu = demo_policies.parties["eastborough-pdu"]
    assert (pdu.kind, pdu.area, pdu.competent_authority) == ("probation", "Eastborough", True)
    vawg = demo_policies.parties["eastborough-vawg"]
    assert vawg.competent_authority is False
    assert demo_policies.parties["hmp-northgate"].area is None


def test_every_demo_flow_field_exists_in_its_message_types(demo_policies: PolicySet) -> None:
    from services.core.messages import MESSAGE_TYPES

    for agreement in demo_policies.agreements:
        for flow in agreement.flows:
            assert flow.senders | flow.recipients <= agreement.parties
            assert flow.purpose in agreement.purposes
            for name in flow.message_types:
                assert flow.fields <= MESSAGE_TYPES[name].paths.keys()


def test_an_empty_agreements_folder_loads_no_agreements(
    policies_copy: Path, schemas_dir: Path
) -> None:
    for path in (policies_copy / "agreements").glob("*.yaml"):
        path.unlink()
    (policies_copy / "agreements" / "README.txt").write_text("not an agreement")
    loaded = load_policies(policies_copy, schemas_dir)
    assert loaded.agreements == ()
    assert len(loaded.parties) == 8


def test_a_copy_with_no_changes_loads_the_same(
    policies_copy: Path, schemas_dir: Path, demo_policies: PolicySet
) -> None:
    # Round-tripping through yaml.safe_dump keeps dates and versions as strings.
    for path in (policies_copy / "agreements").glob("*.yaml"):
        _edit(policies_copy, f"agreements/{path.name}", lambda doc: None)
    assert load_policies(policies_copy, schemas_dir) == demo_policies


# --- fictional agreements ---------------------------------------------------------------


def test_the_shipped_demo_partnership_is_fictional_and_refused_in_production(
    repo_policies_dir: Path, schemas_dir: Path
) -> None:
    demo = load_policies(repo_policies_dir, schemas_dir)
    assert "parties.yaml" in demo.fictional
    assert {f"agreements/{a.id}.yaml" for a in demo.agreements} <= set(demo.fictional)
    with pytest.raises(FictionalPolicies) as info:
        load_policies(repo_policies_dir, schemas_dir, refuse_fictional=True)
    assert isinstance(info.value, ConfigurationError)
    assert "marked fictional" in info.value.detail
    assert "ISA_BROKER_POLICIES_DIR" in info.value.detail


def test_one_fictional_file_refuses_the_set_in_production(
    policies_copy: Path, schemas_dir: Path
) -> None:
    def real(doc: dict[str, Any]) -> None:
        doc.pop("fictional", None)

    _edit(policies_copy, "parties.yaml", real)
    for path in (policies_copy / "agreements").glob("*.yaml"):
        _edit(policies_copy, f"agreements/{path.name}", real)
    loaded = load_policies(policies_copy, schemas_dir, refuse_fictional=True)
    assert loaded.fictional == ()  # the control: a partnership's own files load
    # an agreement copied from the demo into a real folder is still refused
    _edit(policies_copy, EB2, lambda doc: doc.update(fictional=True))
    with pytest.raises(FictionalPolicies, match=r"agreements/ISA-EB-002\.yaml"):
        load_policies(policies_copy, schemas_dir, refuse_fictional=True)
    # and a marker that is not a boolean is a schema error
    _edit(policies_copy, EB2, lambda doc: doc.update(fictional="yes"))
    assert "/fictional" in _refused(policies_copy, schemas_dir)


# --- bad agreement files ----------------------------------------------------------------

EB2 = "agreements/ISA-EB-002.yaml"
EB1 = "agreements/ISA-EB-001.yaml"


def _flow(doc: dict[str, Any], flow_id: str) -> dict[str, Any]:
    return next(f for f in doc["flows"] if f["id"] == flow_id)


def _block(**changes: Any) -> dict[str, Any]:
    block = {
        "id": "no-address",
        "fields": ["destination.address"],
        "never_to": ["kind:vawg-service"],
        "reason": "Victim services never receive the release address",
    }
    block.update(changes)
    return block


CASES = [
    pytest.param(
        EB2,
        lambda d: d["parties"].append({"id": "eastborough-nobody", "role": "controller"}),
        "ISA-EB-002.yaml: ISA-EB-002 /parties names 'eastborough-nobody', who is not in the "
        "register",
        id="unknown-party",
    ),
    pytest.param(
        EB2,
        lambda d: d["parties"].append({"id": "eastborough-vawg", "role": "processor"}),
        "ISA-EB-002.yaml: ISA-EB-002 /parties lists 'eastborough-vawg' twice",
        id="party-listed-twice",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0]["to"].append("eastborough-pdu"),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert) /to: "
        "'eastborough-pdu' is not a party to the agreement",
        id="flow-recipient-not-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0].update({"from": ["eastborough-housing"]}),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert) /from: "
        "'eastborough-housing' is not a party to the agreement",
        id="flow-sender-not-in-agreement",
    ),
    pytest.param(
        EB2,
        # the register has police, but none of them is a party to ISA-EB-002
        lambda d: d["flows"][0].update({"to": ["kind:police"]}),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert) /to: no party of "
        "kind 'police' in the agreement",
        id="flow-kind-with-no-party-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0].update({"prohibited_fields": ["destination.postcode"]}),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): release-notice "
        "has no field(s) ['destination.postcode']",
        id="unknown-prohibited-field",
    ),
    pytest.param(
        EB2,
        lambda d: d.update({"hard_blocks": [_block(never_to=["eastborough-nobody"])]}),
        "ISA-EB-002.yaml: ISA-EB-002 /hard_blocks/0 (no-address): /never_to names "
        "unregistered 'eastborough-nobody'",
        id="hard-block-unregistered-party",
    ),
    pytest.param(
        EB2,
        lambda d: d.update({"hard_blocks": [_block(fields=["release.reason"])]}),
        "ISA-EB-002.yaml: ISA-EB-002 /hard_blocks/0 (no-address): no message type has all "
        "of ['release.reason']",
        id="hard-block-field-in-no-message-type",
    ),
    pytest.param(
        EB2,
        lambda d: d.update(
            {"hard_blocks": [_block(fields=["recall"], message_types=["release-notice"])]}
        ),
        "ISA-EB-002.yaml: ISA-EB-002 /hard_blocks/0 (no-address): release-notice has no "
        "field(s) ['recall']",
        id="hard-block-field-missing-in-its-message-type",
    ),
    pytest.param(
        EB2,
        lambda d: d.update({"retention": [{"party": "eastborough-pdu", "period": "P1Y"}]}),
        "ISA-EB-002.yaml: ISA-EB-002 /retention/0 names 'eastborough-pdu', who is not a party "
        "to the agreement",
        id="retention-party-not-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d["signatories"].append(
            {"party": "eastborough-pdu", "role": "Head of PDU", "signed_on": "2025-08-21"}
        ),
        "ISA-EB-002.yaml: ISA-EB-002 /signatories/2 names 'eastborough-pdu', who is not a "
        "party to the agreement",
        id="signatory-not-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d.update(
            {"breach_contacts": [{"party": "eastborough-housing", "contact": "ig@council.example"}]}
        ),
        "ISA-EB-002.yaml: ISA-EB-002 /breach_contacts/0 names 'eastborough-housing', who is "
        "not a party to the agreement",
        id="breach-contact-not-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d["data_items"]["release-notice"].update({"release.reason": "personal"}),
        "ISA-EB-002.yaml: ISA-EB-002 /data_items: release-notice has no field(s) "
        "['release.reason']",
        id="data-item-not-in-message-type",
    ),
    pytest.param(
        EB2,
        lambda d: d["data_items"].update({"licence-recall": {"destination": "personal"}}),
        "ISA-EB-002.yaml: ISA-EB-002 /data_items: licence-recall has no field(s) ['destination']",
        id="data-item-of-another-message-type",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0].update({"purpose": "victim-support"}),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): purpose "
        "'victim-support' is not declared in /purposes",
        id="undeclared-purpose",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0]["fields"].append("release.reason"),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): release-notice "
        "has no field(s) ['release.reason']",
        id="unknown-field-path",
    ),
    pytest.param(
        EB1,
        # recall fields exist in licence-recall but not in release-notice
        lambda d: _flow(d, "recall-to-police-and-prison")["message_types"].append("release-notice"),
        "ISA-EB-001.yaml: ISA-EB-001 /flows/4 (recall-to-police-and-prison): release-notice "
        "has no field(s) ['recall']",
        id="field-missing-in-second-message-type",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0]["fields"].append("licence_conditions.exclusion_zones.area"),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): release-notice "
        "has no field(s) ['licence_conditions.exclusion_zones.area']",
        id="field-beneath-an-array",
    ),
    pytest.param(
        EB2,
        lambda d: d.update({"effective_from": "2027-09-01", "expires_on": "2027-08-31"}),
        "ISA-EB-002.yaml: ISA-EB-002 /expires_on is before /effective_from",
        id="expires-before-effective",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"].append(dict(d["flows"][0])),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/1 (perpetrator-release-alert): flow id is used twice",
        id="duplicate-flow-id",
    ),
    pytest.param(
        EB2,
        lambda d: d.update({"id": "ISA-EB-001"}),
        "ISA-EB-002.yaml: agreement id ISA-EB-001 is used twice",
        id="duplicate-agreement-id",
    ),
]


@pytest.mark.parametrize(("file", "mutate", "message"), CASES)
def test_bad_agreement_is_refused_naming_file_and_problem(
    policies_copy: Path, schemas_dir: Path, file: str, mutate: Mutation, message: str
) -> None:
    _edit(policies_copy, file, mutate)
    assert _refused(policies_copy, schemas_dir) == message


SCHEMA_CASES = [
    pytest.param(
        lambda d: d.update({"status": "live"}), "/status: 'live' is not one of", id="bad-status"
    ),
    pytest.param(
        lambda d: d.update({"version": 2.0}),
        "/version: 2.0 is not of type 'string'",
        id="unquoted-version",
    ),
    pytest.param(
        lambda d: d.pop("legal_gateways"),
        "/: 'legal_gateways' is a required property",
        id="missing-legal-gateways",
    ),
    pytest.param(
        lambda d: d.update({"lawful_basis": d.pop("legal_gateways")}),
        "Additional properties are not allowed ('lawful_basis' was unexpected)",
        id="v1-lawful-basis",
    ),
    pytest.param(
        lambda d: d.update({"parties": ["hmp-northgate", "eastborough-vawg"]}),
        "/parties/0: 'hmp-northgate' is not of type 'object'",
        id="v1-party-list",
    ),
    pytest.param(
        lambda d: d["parties"][0].update({"role": "owner"}),
        "/parties/0/role: 'owner' is not one of",
        id="bad-party-role",
    ),
    pytest.param(
        lambda d: d.pop("review_date"),
        "/: 'review_date' is a required property",
        id="missing-review-date",
    ),
    pytest.param(
        lambda d: d.pop("data_items"),
        "/: 'data_items' is a required property",
        id="missing-data-items",
    ),
    pytest.param(
        lambda d: d.update({"type": "memorandum"}),
        "/type: 'memorandum' is not one of",
        id="bad-type",
    ),
    pytest.param(
        lambda d: d.update({"supersedes": "isa-eb-001"}),
        "/supersedes: 'isa-eb-001' does not match",
        id="bad-supersedes",
    ),
    pytest.param(
        lambda d: d["flows"][0]["legal_regime"].pop("article_6"),
        "/flows/0/legal_regime: 'article_6' is a required property",
        id="uk-gdpr-without-article-6",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"legal_regime": {"regime": "dpa-2018-part-3"}}),
        "/flows/0/legal_regime: 'condition' is a required property",
        id="part-3-without-condition",
    ),
    pytest.param(
        lambda d: d["flows"][0].pop("legal_regime"),
        "/flows/0: 'legal_regime' is a required property",
        id="no-legal-regime",
    ),
    pytest.param(
        lambda d: d.update({"retention": [{"party": "eastborough-vawg", "period": "1 year"}]}),
        "/retention/0/period: '1 year' does not match",
        id="retention-not-iso-8601",
    ),
    pytest.param(
        lambda d: d["data_items"]["release-notice"].update({"person.crn": "secret"}),
        "/data_items/release-notice/person.crn: 'secret' is not one of",
        id="bad-classification",
    ),
    pytest.param(
        lambda d: d.update(
            {"hard_blocks": [{"id": "x", "fields": ["person"], "never_to": [], "reason": "r"}]}
        ),
        "/hard_blocks/0/never_to: [] should be non-empty",
        id="hard-block-to-nobody",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"condition": ""}),
        "/flows/0/condition: '' should be non-empty",
        id="empty-condition",
    ),
    pytest.param(
        lambda d: d.update({"effective_from": "2025-02-30"}),
        "/effective_from: '2025-02-30' is not a 'date'",
        id="impossible-date",
    ),
    pytest.param(
        lambda d: d.update({"effective_from": dt.date(2025, 9, 1)}),
        "/effective_from: datetime.date(2025, 9, 1) is not of type 'string'",
        id="unquoted-date",
    ),
    pytest.param(
        lambda d: d.update({"parties": [{"id": "hmp-northgate", "role": "controller"}]}),
        "/parties: [{'id': 'hmp-northgate', 'role': 'controller'}] is too short",
        id="one-party",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"message_types": ["parole-decision"]}),
        "/flows/0/message_types/0: 'parole-decision' is not one of",
        id="unknown-message-type",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"fields": ["Person.Name"]}),
        "/flows/0/fields/0: 'Person.Name' does not match",
        id="bad-field-syntax",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"fields": []}),
        "/flows/0/fields: [] should be non-empty",
        id="no-fields",
    ),
    pytest.param(
        lambda d: d.update({"approved_by": "someone"}),
        "Additional properties are not allowed ('approved_by' was unexpected)",
        id="extra-property",
    ),
    pytest.param(
        lambda d: d["flows"][0].update({"to": ["eastborough-vawg", "eastborough-vawg"]}),
        "/flows/0/to: ['eastborough-vawg', 'eastborough-vawg'] has non-unique elements",
        id="duplicate-recipient",
    ),
]


@pytest.mark.parametrize(("mutate", "fragment"), SCHEMA_CASES)
def test_schema_violation_is_refused_naming_file_and_pointer(
    policies_copy: Path, schemas_dir: Path, mutate: Mutation, fragment: str
) -> None:
    _edit(policies_copy, EB2, mutate)
    message = _refused(policies_copy, schemas_dir)
    assert message.startswith("ISA-EB-002.yaml: /"), message
    assert fragment in message


def test_all_schema_problems_are_listed_together(policies_copy: Path, schemas_dir: Path) -> None:
    def two_problems(d: dict[str, Any]) -> None:
        d["status"] = "live"
        d.pop("title")

    _edit(policies_copy, EB2, two_problems)
    message = _refused(policies_copy, schemas_dir)
    assert "'title' is a required property" in message
    assert "/status: 'live' is not one of" in message
    assert message.count("; ") == 1


def test_unreadable_yaml_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    (policies_copy / EB2).write_text("id: [unclosed\n")
    message = _refused(policies_copy, schemas_dir)
    assert message.startswith("ISA-EB-002.yaml: cannot be read as YAML:")


def test_empty_agreement_file_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    (policies_copy / "agreements" / "ISA-EB-004.yaml").write_text("")
    assert _refused(policies_copy, schemas_dir) == (
        "ISA-EB-004.yaml: /: None is not of type 'object'"
    )


def test_a_single_bad_file_refuses_the_whole_set(policies_copy: Path, schemas_dir: Path) -> None:
    _edit(policies_copy, "agreements/ISA-WS-003.yaml", lambda d: d.update({"status": "live"}))
    message = _refused(policies_copy, schemas_dir)
    assert message.startswith("ISA-WS-003.yaml: ")


def test_duplicate_id_is_reported_against_the_later_file(
    policies_copy: Path, schemas_dir: Path
) -> None:
    shutil.copy(policies_copy / EB1, policies_copy / "agreements" / "ISA-ZZ-999.yaml")
    assert _refused(policies_copy, schemas_dir) == (
        "ISA-ZZ-999.yaml: agreement id ISA-EB-001 is used twice"
    )


def test_duplicate_purpose_id_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    _edit(
        policies_copy,
        EB2,
        lambda d: d["purposes"].append({"id": "victim-safety", "description": "Marketing"}),
    )
    message = _refused(policies_copy, schemas_dir)
    assert "victim-safety" in message


# --- format v2: conditions, kinds, prohibitions, hard blocks and metadata ----------------


def test_a_cel_syntax_error_is_refused_naming_the_flow(
    policies_copy: Path, schemas_dir: Path
) -> None:
    _edit(
        policies_copy,
        EB2,
        lambda d: d["flows"][0].update({"condition": "message.risk.domestic_abuse =="}),
    )
    message = _refused(policies_copy, schemas_dir)
    assert message.startswith(
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): /condition is not "
        "valid CEL: "
    ), message
    assert "\n" not in message


def test_a_condition_is_compiled_once_at_load_time(policies_copy: Path, schemas_dir: Path) -> None:
    def v2(d: dict[str, Any]) -> None:
        d["flows"][0]["condition"] = "message.risk.domestic_abuse == true"
        d["flows"][0]["prohibited_fields"] = ["destination.address"]
        d["flows"][0]["legal_regime"] = {
            "regime": "dpa-2018-part-3",
            "condition": "s35(5); Sch 8 para 1",
        }

    _edit(policies_copy, EB2, v2)
    eb2 = load_policies(policies_copy, schemas_dir).agreement("ISA-EB-002")
    assert eb2 is not None
    alert = eb2.flows[0]
    assert alert.condition == "message.risk.domestic_abuse == true"
    assert alert.program is not None
    assert alert.program.source == alert.condition
    assert alert.prohibited == {"destination.address"}
    assert alert.legal_regime == {"regime": "dpa-2018-part-3", "condition": "s35(5); Sch 8 para 1"}


def test_kind_references_in_flows_expand_to_the_agreements_parties_of_that_kind(
    policies_copy: Path, schemas_dir: Path
) -> None:
    def by_kind(d: dict[str, Any]) -> None:
        _flow(d, "release-to-iom").update({"from": ["kind:prison"], "to": ["kind:police"]})

    _edit(policies_copy, EB1, by_kind)
    eb1 = load_policies(policies_copy, schemas_dir).agreement("ISA-EB-001")
    assert eb1 is not None
    iom = next(f for f in eb1.flows if f.id == "release-to-iom")
    assert iom.senders == {"hmp-northgate"}
    assert iom.recipients == {"eastborough-police-iom", "eastborough-police-dip"}


def test_kind_references_mix_with_party_ids(policies_copy: Path, schemas_dir: Path) -> None:
    _edit(
        policies_copy,
        EB1,
        lambda d: _flow(d, "release-to-housing").update(
            {"to": ["kind:council-housing", "eastborough-recovery"]}
        ),
    )
    eb1 = load_policies(policies_copy, schemas_dir).agreement("ISA-EB-001")
    assert eb1 is not None
    housing = next(f for f in eb1.flows if f.id == "release-to-housing")
    assert housing.recipients == {"eastborough-housing", "eastborough-recovery"}


def test_hard_blocks_may_name_any_registered_party_or_kind(
    policies_copy: Path, schemas_dir: Path
) -> None:
    # ISA-EB-002 is between the prison and VAWG, yet protects data from every police team
    # and from housing, whatever other agreement would share it.
    _edit(
        policies_copy,
        EB2,
        lambda d: d.update(
            {
                "hard_blocks": [
                    _block(never_to=["kind:police", "eastborough-housing"]),
                    _block(
                        id="no-health",
                        fields=["resettlement_needs.opioid_substitution_therapy"],
                        never_to=["kind:vawg-service"],
                        message_types=["release-notice"],
                    ),
                ]
            }
        ),
    )
    eb2 = load_policies(policies_copy, schemas_dir).agreement("ISA-EB-002")
    assert eb2 is not None
    address, health = eb2.hard_blocks
    assert address.parties == {
        "eastborough-police-iom",
        "eastborough-police-dip",
        "eastborough-housing",
    }
    assert address.fields == {"destination.address"}
    assert address.message_types == frozenset()  # every message type
    assert address.reason == "Victim services never receive the release address"
    assert address.applies("eastborough-housing", "licence-recall")
    assert not address.applies("eastborough-vawg", "release-notice")
    assert health.parties == {"eastborough-vawg"}
    assert health.applies("eastborough-vawg", "release-notice")
    assert not health.applies("eastborough-vawg", "dip-breach")


def test_a_hard_block_naming_an_unknown_kind_is_refused(
    policies_copy: Path, schemas_dir: Path
) -> None:
    # Regression: a kind matching no registered party (a typo) once made a block that
    # silently protected nothing.
    _edit(
        policies_copy,
        EB2,
        lambda d: d.update(
            {
                "hard_blocks": [
                    _block(never_to=["kind:polce"]),
                ]
            }
        ),
    )
    assert _refused(policies_copy, schemas_dir) == (
        "ISA-EB-002.yaml: ISA-EB-002 /hard_blocks/0 (no-address): /never_to names "
        "'kind:polce', but no registered party is of that kind"
    )


def test_agreement_metadata_is_loaded(policies_copy: Path, schemas_dir: Path) -> None:
    def metadata(d: dict[str, Any]) -> None:
        d["supersedes"] = "ISA-EB-002@0.9"
        d["dpia_reference"] = "DPIA-TEST-1"
        d["parties"][0]["competent_authority"] = False
        d["parties"][1]["competent_authority"] = True
        d["retention"] = [
            {"party": "eastborough-vawg", "period": "P1Y", "note": "until the plan closes"},
            {"party": "hmp-northgate", "period": "P6Y"},
        ]
        d["breach_contacts"] = [{"party": "eastborough-vawg", "contact": "dpo@vawg.example"}]

    _edit(policies_copy, EB2, metadata)
    eb2 = load_policies(policies_copy, schemas_dir).agreement("ISA-EB-002")
    assert eb2 is not None
    assert (eb2.type, eb2.supersedes, eb2.dpia_reference) == (
        "one-way-disclosure",
        "ISA-EB-002@0.9",
        "DPIA-TEST-1",
    )
    # An agreement may override the register's competent_authority for its parties.
    assert [(r.id, r.role, r.competent_authority) for r in eb2.party_roles] == [
        ("hmp-northgate", "controller", False),
        ("eastborough-vawg", "controller", True),
    ]
    assert eb2.retention == {"eastborough-vawg": "P1Y", "hmp-northgate": "P6Y"}
    assert eb2.breach_contacts == ({"party": "eastborough-vawg", "contact": "dpo@vawg.example"},)


def test_an_agreement_may_have_no_flows(policies_copy: Path, schemas_dir: Path) -> None:
    def umbrella(d: dict[str, Any]) -> None:
        d["flows"] = []
        d["hard_blocks"] = [_block()]

    _edit(policies_copy, EB2, umbrella)
    loaded = load_policies(policies_copy, schemas_dir)
    eb2 = loaded.agreement("ISA-EB-002")
    assert eb2 is not None
    assert eb2.flows == ()
    assert eb2.hard_blocks[0].parties == {"eastborough-vawg"}


# --- the party register -----------------------------------------------------------------


def test_duplicate_party_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    def dup(d: dict[str, Any]) -> None:
        d["parties"].append(dict(d["parties"][0], name="Another prison"))

    _edit(policies_copy, "parties.yaml", dup)
    assert _refused(policies_copy, schemas_dir, PartyRegisterInvalid) == (
        "parties.yaml: party 'hmp-northgate' is listed twice"
    )


def test_party_register_schema_violation(policies_copy: Path, schemas_dir: Path) -> None:
    _edit(policies_copy, "parties.yaml", lambda d: d["parties"][1].update({"kind": "court"}))
    message = _refused(policies_copy, schemas_dir, PartyRegisterInvalid)
    assert re.match(r"parties\.yaml: /parties/1/kind: 'court' is not one of", message), message


def test_removing_a_party_breaks_the_agreements_naming_it(
    policies_copy: Path, schemas_dir: Path
) -> None:
    def drop_vawg(d: dict[str, Any]) -> None:
        d["parties"] = [p for p in d["parties"] if p["id"] != "eastborough-vawg"]

    _edit(policies_copy, "parties.yaml", drop_vawg)
    assert _refused(policies_copy, schemas_dir) == (
        "ISA-EB-002.yaml: ISA-EB-002 /parties names 'eastborough-vawg', who is not in the register"
    )


def test_missing_party_register_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    (policies_copy / "parties.yaml").unlink()
    with pytest.raises(PartyRegisterInvalid, match=r"^parties\.yaml: cannot be read as YAML"):
        load_parties(policies_copy / "parties.yaml", schemas_dir)
