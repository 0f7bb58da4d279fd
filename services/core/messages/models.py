"""Pydantic models of the three message types. Every object forbids unknown properties, so
the generated JSON Schemas carry ``additionalProperties: false``; every string, list and
number is bounded (identifiers by anchored patterns of fixed length), and free text refuses
control characters and lone surrogates (a check the schemas do not carry). All example data
is synthetic."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from .person import IDENTIFIERS, identifier_keys

_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
_TEXT_BREAKING = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _one_line(value: str) -> str:
    if _LINE_BREAKING.search(value):
        raise ValueError("must not contain control characters or lone surrogates")
    return value


def _text(value: str) -> str:
    if _TEXT_BREAKING.search(value):
        raise ValueError("must not contain control characters (other than tab and line breaks)")
    return value


Str = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(_one_line),
]
LongStr = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_text)]
PrisonNumber = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{4}[A-Z]{2}$")]
PncId = Annotated[str, StringConstraints(pattern=r"^[0-9]{2,4}/[0-9]{1,7}[A-Z]$")]
Crn = Annotated[str, StringConstraints(pattern=r"^[A-Z][0-9]{6}$")]
Postcode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]? ?[0-9][A-Z]{2}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Gender(StrEnum):
    female = "female"
    male = "male"
    non_binary = "non_binary"
    not_stated = "not_stated"


class PersonIdentifiers(_Strict):
    """One person, by one or more of their identifiers (a lookup matches any of them)."""

    pnc_id: PncId | None = None
    crn: Crn | None = None
    prison_number: PrisonNumber | None = None

    @model_validator(mode="after")
    def _has_identifier(self) -> PersonIdentifiers:
        if not any(getattr(self, n) for n in IDENTIFIERS):
            raise ValueError("at least one of pnc_id, crn or prison_number is required")
        return self

    def identifiers(self) -> list[str]:
        """The identifier strings (``pnc_id:24/123456X``), in keying order."""
        return identifier_keys(self.model_dump())


def _one_identifier_required(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """JSON Schema: at least one identifier, listed in the order the model declares them."""
    schema["anyOf"] = [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in model.model_fields
        if name in IDENTIFIERS
    ]


class Person(_Strict):
    """Who the message is about. At least one identifier is required."""

    model_config = ConfigDict(json_schema_extra=_one_identifier_required)

    prison_number: PrisonNumber | None = Field(None, description="NOMIS prison number")
    pnc_id: PncId | None = Field(None, description="Police National Computer id")
    crn: Crn | None = Field(None, description="Probation case reference (NDelius CRN)")
    given_name: Str
    family_name: Str
    date_of_birth: dt.date
    gender: Gender | None = None

    @model_validator(mode="after")
    def _has_identifier(self) -> Person:
        if not any(getattr(self, name) for name in IDENTIFIERS):
            raise ValueError("at least one of prison_number, pnc_id or crn is required")
        return self


class MappaCategory(StrEnum):
    c1 = "1"
    c2 = "2"
    c3 = "3"
    c4 = "4"


class MappaLevel(StrEnum):
    l1 = "1"
    l2 = "2"
    l3 = "3"


class RoshLevel(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    very_high = "very_high"


class Mappa(_Strict):
    category: MappaCategory
    level: MappaLevel


class Risk(_Strict):
    mappa: Mappa | None = None
    rosh_level: RoshLevel | None = Field(None, description="Risk of serious harm level")
    domestic_abuse: bool = Field(False, description="Domestic-abuse perpetrator flag")
    national_security_division: bool = False
    sex_offender_register: bool = False


# --- release notice -------------------------------------------------------------------------


class ReleaseType(StrEnum):
    conditional_release = "conditional_release"
    ecsl = "ecsl"
    home_detention_curfew = "home_detention_curfew"
    parole = "parole"
    end_of_sentence = "end_of_sentence"


class Release(_Strict):
    date: dt.date = Field(description="Scheduled release date")
    conditional_release_date: dt.date | None = Field(
        None, description="The conditional release date the release would otherwise have been"
    )
    type: ReleaseType
    establishment: Str = Field(description="Releasing prison")


class Address(_Strict):
    line1: Str
    line2: Str | None = None
    town: Str
    postcode: Postcode


class Destination(_Strict):
    no_fixed_abode: bool = False
    address: Address | None = None
    local_authority: Str
    probation_delivery_unit: Str | None = None


class ExclusionZone(_Strict):
    description: LongStr
    area: Str | None = None


class LicenceConditions(_Strict):
    exclusion_zones: list[ExclusionZone] = Field(default_factory=list, max_length=50)
    non_contact: bool = Field(False, description="Non-contact condition with named people")
    electronic_monitoring: bool = False


class OpioidSubstitution(_Strict):
    medication: Str
    daily_dose_mg: float | None = Field(None, ge=0, le=1000)
    last_dose_date: dt.date | None = None


class ResettlementNeeds(_Strict):
    accommodation: bool = False
    opioid_substitution_therapy: OpioidSubstitution | None = None
    mental_health: bool = False
    benefits: bool = False
    identity_documents: bool = False


class ReleaseNotice(_Strict):
    """A prison tells partners that a person will be released."""

    model_config = ConfigDict(
        title="Release notice",
        json_schema_extra={
            "examples": [
                {
                    "person": {
                        "prison_number": "A1234BC",
                        "pnc_id": "24/123456X",
                        "crn": "X123456",
                        "given_name": "Alexis",
                        "family_name": "Testperson",
                        "date_of_birth": "1990-01-01",
                        "gender": "male",
                    },
                    "release": {
                        "date": "2026-12-01",
                        "conditional_release_date": "2027-01-20",
                        "type": "ecsl",
                        "establishment": "HMP Northgate (fictional)",
                    },
                    "destination": {
                        "no_fixed_abode": False,
                        "address": {
                            "line1": "1 Example Street",
                            "town": "Eastborough",
                            "postcode": "ZZ1 1ZZ",
                        },
                        "local_authority": "Eastborough",
                        "probation_delivery_unit": "Eastborough PDU",
                    },
                    "risk": {
                        "rosh_level": "high",
                        "domestic_abuse": True,
                    },
                    "licence_conditions": {
                        "exclusion_zones": [
                            {"description": "Not to enter Example Road area", "area": "ZZ2"}
                        ],
                        "non_contact": True,
                        "electronic_monitoring": True,
                    },
                    "resettlement_needs": {"accommodation": False, "mental_health": True},
                    "victim_contact_scheme": True,
                },
                {
                    "person": {
                        "prison_number": "B9876ZY",
                        "given_name": "Sam",
                        "family_name": "Sample",
                        "date_of_birth": "1985-06-15",
                    },
                    "release": {
                        "date": "2026-12-10",
                        "type": "conditional_release",
                        "establishment": "HMP Northgate (fictional)",
                    },
                    "destination": {"no_fixed_abode": True, "local_authority": "Eastborough"},
                    "risk": {"rosh_level": "medium", "mappa": {"category": "2", "level": "1"}},
                    "resettlement_needs": {
                        "accommodation": True,
                        "opioid_substitution_therapy": {
                            "medication": "methadone",
                            "daily_dose_mg": 40,
                        },
                    },
                },
            ]
        },
    )

    person: Person
    release: Release
    destination: Destination
    risk: Risk = Field(default_factory=lambda: Risk())
    licence_conditions: LicenceConditions | None = None
    resettlement_needs: ResettlementNeeds | None = None
    victim_contact_scheme: bool = False


# --- licence recall -------------------------------------------------------------------------


class RecallType(StrEnum):
    standard = "standard"
    fixed_term = "fixed_term"
    emergency = "emergency"


class RecallReason(StrEnum):
    breach_of_licence_conditions = "breach_of_licence_conditions"
    further_offence = "further_offence"
    escalating_risk = "escalating_risk"
    failure_to_keep_in_touch = "failure_to_keep_in_touch"
    other = "other"


class Recall(_Strict):
    type: RecallType
    reason_category: RecallReason
    date: dt.date
    unlawfully_at_large: bool = Field(
        False, description="The person is at large and police must act"
    )


class LicenceRecall(_Strict):
    """Probation tells partners that a person on licence is recalled to custody."""

    model_config = ConfigDict(
        title="Licence recall",
        json_schema_extra={
            "examples": [
                {
                    "person": {
                        "pnc_id": "24/123456X",
                        "crn": "X123456",
                        "given_name": "Alexis",
                        "family_name": "Testperson",
                        "date_of_birth": "1990-01-01",
                    },
                    "recall": {
                        "type": "emergency",
                        "reason_category": "escalating_risk",
                        "date": "2026-12-05",
                        "unlawfully_at_large": True,
                    },
                    "risk": {"rosh_level": "very_high", "domestic_abuse": True},
                },
                {
                    "person": {
                        "crn": "Y654321",
                        "given_name": "Jordan",
                        "family_name": "Placeholder",
                        "date_of_birth": "1978-03-30",
                    },
                    "recall": {
                        "type": "fixed_term",
                        "reason_category": "failure_to_keep_in_touch",
                        "date": "2026-11-20",
                    },
                },
            ]
        },
    )

    person: Person
    recall: Recall
    risk: Risk = Field(default_factory=lambda: Risk())


# --- DIP breach -----------------------------------------------------------------------------


class Substance(StrEnum):
    opiates = "opiates"
    cocaine = "cocaine"


class AssessmentKind(StrEnum):
    initial = "initial"
    follow_up = "follow_up"


class BreachType(StrEnum):
    failed_to_attend = "failed_to_attend"
    ra1_not_signed = "ra1_not_signed"


class BreachOutcome(StrEnum):
    postal_charge_requisition = "postal_charge_requisition"
    no_further_action = "no_further_action"
    circulated_failed_to_attend = "circulated_failed_to_attend"
    arrested = "arrested"
    re_engaged = "re_engaged"


class DrugTest(_Strict):
    date: dt.date
    substances: list[Substance] = Field(min_length=1, max_length=2)


class Assessment(_Strict):
    kind: AssessmentKind = AssessmentKind.initial
    appointment: dt.datetime
    provider: Str | None = None


class Breach(_Strict):
    type: BreachType
    date: dt.date
    stl_expiry: dt.date = Field(description="Statutory time limit expiry")
    outcome: BreachOutcome | None = None


class DipBreach(_Strict):
    """Police tell partners that a person breached a Drug Interventions Programme requirement."""

    model_config = ConfigDict(
        title="DIP breach",
        json_schema_extra={
            "examples": [
                {
                    "person": {
                        "pnc_id": "23/765432A",
                        "given_name": "Casey",
                        "family_name": "Example",
                        "date_of_birth": "1995-09-09",
                    },
                    "test": {"date": "2026-11-10", "substances": ["opiates", "cocaine"]},
                    "assessment": {
                        "kind": "initial",
                        "appointment": "2026-11-12T10:00:00Z",
                        "provider": "Eastborough Recovery Service (fictional)",
                    },
                    "breach": {
                        "type": "failed_to_attend",
                        "date": "2026-11-12",
                        "stl_expiry": "2027-05-10",
                    },
                },
                {
                    "person": {
                        "pnc_id": "22/111222B",
                        "crn": "Z111222",
                        "given_name": "Robin",
                        "family_name": "Fixture",
                        "date_of_birth": "1988-02-29",
                    },
                    "test": {"date": "2026-10-01", "substances": ["cocaine"]},
                    "assessment": {"appointment": "2026-10-03T14:30:00Z"},
                    "breach": {
                        "type": "ra1_not_signed",
                        "date": "2026-10-03",
                        "stl_expiry": "2027-04-01",
                        "outcome": "postal_charge_requisition",
                    },
                },
            ]
        },
    )

    person: Person
    test: DrugTest
    assessment: Assessment
    breach: Breach
