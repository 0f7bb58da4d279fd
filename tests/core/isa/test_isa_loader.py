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

from services.core.errors import AgreementFileInvalid, ConfigurationError, PartyRegisterInvalid
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
        "offender-management", "public-protection", "resettlement", "continuity-of-care",
        "dip-enforcement",
    }
    assert eb1.lawful_basis[0] == "Crime and Disorder Act 1998 s115"
    housing = next(f for f in eb1.flows if f.id == "release-to-housing")
    assert housing.senders == {"hmp-northgate"}
    assert housing.recipients == {"eastborough-housing"}
    assert housing.message_types == {"release-notice"}
    assert housing.purpose == "resettlement"
    assert "resettlement_needs.accommodation" in housing.fields
    assert "risk" not in housing.fields
    assert housing.description.startswith("Housing receives")
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


# --- bad agreement files ----------------------------------------------------------------

EB2 = "agreements/ISA-EB-002.yaml"
EB1 = "agreements/ISA-EB-001.yaml"


def _flow(doc: dict[str, Any], flow_id: str) -> dict[str, Any]:
    return next(f for f in doc["flows"] if f["id"] == flow_id)


CASES = [
    pytest.param(
        EB2,
        lambda d: d["parties"].append("eastborough-nobody"),
        "ISA-EB-002.yaml: ISA-EB-002 /parties names unregistered ['eastborough-nobody']",
        id="unknown-party",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0]["to"].append("eastborough-pdu"),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): /to names "
        "['eastborough-pdu'], who are not parties to the agreement",
        id="flow-recipient-not-in-agreement",
    ),
    pytest.param(
        EB2,
        lambda d: d["flows"][0].update({"from": ["eastborough-housing"]}),
        "ISA-EB-002.yaml: ISA-EB-002 /flows/0 (perpetrator-release-alert): /from names "
        "['eastborough-housing'], who are not parties to the agreement",
        id="flow-sender-not-in-agreement",
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
        lambda d: _flow(d, "recall-to-police-and-prison")["message_types"].append(
            "release-notice"
        ),
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
    pytest.param(lambda d: d.update({"status": "live"}),
                 "/status: 'live' is not one of", id="bad-status"),
    pytest.param(lambda d: d.update({"version": 2.0}),
                 "/version: 2.0 is not of type 'string'", id="unquoted-version"),
    pytest.param(lambda d: d.pop("lawful_basis"),
                 "/: 'lawful_basis' is a required property", id="missing-lawful-basis"),
    pytest.param(lambda d: d.update({"effective_from": "2025-02-30"}),
                 "/effective_from: '2025-02-30' is not a 'date'", id="impossible-date"),
    pytest.param(lambda d: d.update({"effective_from": dt.date(2025, 9, 1)}),
                 "/effective_from: datetime.date(2025, 9, 1) is not of type 'string'",
                 id="unquoted-date"),
    pytest.param(lambda d: d.update({"parties": ["hmp-northgate"]}),
                 "/parties: ['hmp-northgate'] is too short", id="one-party"),
    pytest.param(lambda d: d["flows"][0].update({"message_types": ["parole-decision"]}),
                 "/flows/0/message_types/0: 'parole-decision' is not one of",
                 id="unknown-message-type"),
    pytest.param(lambda d: d["flows"][0].update({"fields": ["Person.Name"]}),
                 "/flows/0/fields/0: 'Person.Name' does not match", id="bad-field-syntax"),
    pytest.param(lambda d: d["flows"][0].update({"fields": []}),
                 "/flows/0/fields: [] should be non-empty", id="no-fields"),
    pytest.param(lambda d: d.update({"approved_by": "someone"}),
                 "Additional properties are not allowed ('approved_by' was unexpected)",
                 id="extra-property"),
    pytest.param(lambda d: d["flows"][0].update({"to": ["eastborough-vawg", "eastborough-vawg"]}),
                 "/flows/0/to: ['eastborough-vawg', 'eastborough-vawg'] has non-unique elements",
                 id="duplicate-recipient"),
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
        "ISA-EB-002.yaml: ISA-EB-002 /parties names unregistered ['eastborough-vawg']"
    )


def test_missing_party_register_is_refused(policies_copy: Path, schemas_dir: Path) -> None:
    (policies_copy / "parties.yaml").unlink()
    with pytest.raises(PartyRegisterInvalid, match=r"^parties\.yaml: cannot be read as YAML"):
        load_parties(policies_copy / "parties.yaml", schemas_dir)
