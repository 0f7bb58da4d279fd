"""The message models, their committed JSON Schemas and body validation."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from services.core.errors import ValidationFailed
from services.core.messages import MESSAGE_TYPES, MessageType, get_message_type


def _examples(name: str) -> list[dict[str, Any]]:
    extra = MESSAGE_TYPES[name].model.model_config["json_schema_extra"]
    assert isinstance(extra, dict)
    return copy.deepcopy(extra["examples"])


EXAMPLES = [
    pytest.param(name, i, id=f"{name}-{i}")
    for name in MESSAGE_TYPES
    for i in range(len(_examples(name)))
]


def _body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _committed(schemas_dir: Path, mt: MessageType) -> dict[str, Any]:
    return json.loads((schemas_dir / mt.schema_file).read_text())


def _validator(schemas_dir: Path, mt: MessageType) -> Draft202012Validator:
    return _cached_validator(schemas_dir, mt.schema_file)


@functools.cache
def _cached_validator(schemas_dir: Path, schema_file: str) -> Draft202012Validator:
    schema = json.loads((schemas_dir / schema_file).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def _pointer(path: Any) -> str:
    return "".join(f"/{p}" for p in path)


def _rejects(name: str, doc: Any) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        get_message_type(name).validate_json(_body(doc))
    return info.value


# --- the examples -------------------------------------------------------------------------


def test_every_message_type_declares_at_least_two_examples() -> None:
    assert set(MESSAGE_TYPES) == {"release-notice", "licence-recall", "dip-breach"}
    for name in MESSAGE_TYPES:
        assert len(_examples(name)) >= 2, name


@pytest.mark.parametrize(("name", "index"), EXAMPLES)
def test_example_validates_with_the_model(name: str, index: int) -> None:
    example = _examples(name)[index]
    out = MESSAGE_TYPES[name].validate_json(_body(example))
    # Everything the example says survives validation unchanged (defaults may be added).
    assert _subset(example, out)


@pytest.mark.parametrize(("name", "index"), EXAMPLES)
def test_example_validates_with_the_committed_schema(
    name: str, index: int, schemas_dir: Path
) -> None:
    example = _examples(name)[index]
    errors = list(_validator(schemas_dir, MESSAGE_TYPES[name]).iter_errors(example))
    assert errors == []


@pytest.mark.parametrize(("name", "index"), EXAMPLES)
def test_canonical_output_is_schema_valid_and_stable(
    name: str, index: int, schemas_dir: Path
) -> None:
    mt = MESSAGE_TYPES[name]
    once = mt.validate_json(_body(_examples(name)[index]))
    assert list(_validator(schemas_dir, mt).iter_errors(once)) == []
    assert mt.validate_json(_body(once)) == once
    assert None not in _leaves(once), "validate_json must drop None values"


def _subset(small: Any, big: Any) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and _subset(v, big[k]) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) == len(big)
            and all(_subset(a, b) for a, b in zip(small, big, strict=True))
        )
    return bool(small == big and type(small) is type(big)) or (
        isinstance(small, int | float) and not isinstance(small, bool) and small == big
    )


def _leaves(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [x for v in doc.values() for x in _leaves(v)]
    if isinstance(doc, list):
        return [x for v in doc for x in _leaves(v)]
    return [doc]


# --- schema drift -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_committed_schema_equals_generated_schema(name: str, schemas_dir: Path) -> None:
    mt = MESSAGE_TYPES[name]
    assert _committed(schemas_dir, mt) == mt.json_schema(), (
        f"schemas/{mt.schema_file} is stale: run `isa-broker schemas export`"
    )


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_generated_schema_header(name: str) -> None:
    schema = MESSAGE_TYPES[name].json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://isa-broker.example/schemas/{name}.schema.json"
    assert schema["additionalProperties"] is False
    for sub_name, sub in schema.get("$defs", {}).items():
        if sub.get("type") == "object":
            assert sub.get("additionalProperties") is False, sub_name


def test_person_schema_requires_an_identifier(schemas_dir: Path) -> None:
    person = _committed(schemas_dir, MESSAGE_TYPES["release-notice"])["$defs"]["Person"]
    assert person["anyOf"] == [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("prison_number", "pnc_id", "crn")
    ]


# --- invalid bodies -----------------------------------------------------------------------


def _release() -> dict[str, Any]:
    return _examples("release-notice")[0]


def _mutations() -> list[Any]:
    def missing(d: dict[str, Any]) -> None:
        del d["release"]["date"]

    def wrong_enum(d: dict[str, Any]) -> None:
        d["release"]["type"] = "early_release"

    def bad_date(d: dict[str, Any]) -> None:
        d["release"]["date"] = "2026-02-30"

    def not_a_date(d: dict[str, Any]) -> None:
        d["person"]["date_of_birth"] = "01/01/1990"

    def bad_pattern(d: dict[str, Any]) -> None:
        d["person"]["prison_number"] = "a1234bc"

    def bad_postcode(d: dict[str, Any]) -> None:
        d["destination"]["address"]["postcode"] = "not a postcode"

    def no_identifier(d: dict[str, Any]) -> None:
        for key in ("prison_number", "pnc_id", "crn"):
            del d["person"][key]

    def nested_enum(d: dict[str, Any]) -> None:
        d["risk"]["mappa"] = {"category": "5", "level": "1"}

    return [
        pytest.param(
            missing, "/release/date", "missing", "/release", "required", id="missing-field"
        ),
        pytest.param(wrong_enum, "/release/type", "enum", "/release/type", "enum", id="wrong-enum"),
        pytest.param(
            bad_date,
            "/release/date",
            "date_parsing",
            "/release/date",
            "format",
            id="impossible-date",
        ),
        pytest.param(
            not_a_date,
            "/person/date_of_birth",
            "date_parsing",
            "/person/date_of_birth",
            "format",
            id="not-a-date",
        ),
        pytest.param(
            bad_pattern,
            "/person/prison_number",
            "string_pattern_mismatch",
            "/person/prison_number",
            "pattern",
            id="bad-prison-number",
        ),
        pytest.param(
            bad_postcode,
            "/destination/address/postcode",
            "string_pattern_mismatch",
            "/destination/address/postcode",
            "pattern",
            id="bad-postcode",
        ),
        pytest.param(
            no_identifier, "/person", "value_error", "/person", "anyOf", id="no-identifier"
        ),
        pytest.param(
            nested_enum,
            "/risk/mappa/category",
            "enum",
            "/risk/mappa/category",
            "enum",
            id="nested-enum",
        ),
    ]


@pytest.mark.parametrize(("mutate", "pointer", "code", "schema_at", "schema_keyword"), _mutations())
def test_invalid_body_reports_the_json_pointer(
    mutate: Any,
    pointer: str,
    code: str,
    schema_at: str,
    schema_keyword: str,
    schemas_dir: Path,
) -> None:
    doc = _release()
    mutate(doc)
    err = _rejects("release-notice", doc)
    assert [(e["pointer"], e["code"]) for e in err.errors] == [(pointer, code)]
    assert err.errors[0]["message"]
    assert err.detail == f"1 field(s) of the release-notice body failed validation: {pointer}"
    assert err.status == 422
    assert err.code == "validation_failed"
    assert err.extra == {"errors": err.errors}

    # The committed schema rejects the same body at the same place, for the same reason.
    validator = _validator(schemas_dir, MESSAGE_TYPES["release-notice"])
    located = {(_pointer(e.absolute_path), e.validator) for e in _flat(validator.iter_errors(doc))}
    assert (schema_at, schema_keyword) in located, located


def _flat(errors: Any) -> list[Any]:
    """Schema errors including those inside anyOf branches (nullable fields are anyOf)."""
    out = []
    for e in errors:
        out.append(e)
        out.extend(_flat(e.context or []))
    return out


def test_extra_property_is_additional_properties(schemas_dir: Path) -> None:
    doc = _release()
    doc["person"]["nickname"] = "Lex"
    err = _rejects("release-notice", doc)
    assert err.errors == [
        {
            "pointer": "/person/nickname",
            "code": "extra_forbidden",
            "message": "Extra inputs are not permitted",
        }
    ]
    schema_errors = list(_validator(schemas_dir, MESSAGE_TYPES["release-notice"]).iter_errors(doc))
    assert [(e.validator, _pointer(e.absolute_path)) for e in schema_errors] == [
        ("additionalProperties", "/person")
    ]
    assert "nickname" in schema_errors[0].message


def test_extra_top_level_property_is_refused() -> None:
    doc = _release()
    doc["notes"] = "free text"
    assert [e["pointer"] for e in _rejects("release-notice", doc).errors] == ["/notes"]


def test_extra_property_name_is_escaped_in_the_pointer() -> None:
    doc = _release()
    doc["person"]["a/b~c"] = "x"
    assert [e["pointer"] for e in _rejects("release-notice", doc).errors] == ["/person/a~1b~0c"]


def test_error_in_an_array_item_points_at_the_index() -> None:
    doc = _release()
    doc["licence_conditions"]["exclusion_zones"].append({"area": "ZZ3"})
    err = _rejects("release-notice", doc)
    assert [e["pointer"] for e in err.errors] == [
        "/licence_conditions/exclusion_zones/1/description"
    ]


def test_every_failing_field_is_listed() -> None:
    doc = _release()
    del doc["release"]["date"]
    doc["release"]["type"] = "bogus"
    doc["risk"]["rosh_level"] = "extreme"
    err = _rejects("release-notice", doc)
    assert sorted(e["pointer"] for e in err.errors) == [
        "/release/date",
        "/release/type",
        "/risk/rosh_level",
    ]
    assert err.detail.startswith("3 field(s)")


def test_detail_names_at_most_five_pointers() -> None:
    doc = _release()
    doc["person"].update(
        {"prison_number": "x", "pnc_id": "x", "crn": "x", "given_name": "", "family_name": ""}
    )
    doc["release"]["type"] = "bogus"
    err = _rejects("release-notice", doc)
    assert len(err.errors) == 6
    assert err.detail.startswith("6 field(s)")
    named = err.detail.split(": ", 1)[1].split(", ")
    assert named == [e["pointer"] for e in err.errors[:5]]


def test_body_that_is_not_json_is_refused_at_the_root() -> None:
    with pytest.raises(ValidationFailed) as info:
        get_message_type("licence-recall").validate_json(b"{not json")
    assert [e["pointer"] for e in info.value.errors] == [""]
    assert info.value.errors[0]["code"] == "json_invalid"
    assert info.value.detail.endswith(": /")


def test_body_that_is_not_an_object_is_refused() -> None:
    err = _rejects("dip-breach", [1, 2])
    assert [e["pointer"] for e in err.errors] == [""]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("victim_contact_scheme",), "true"),
        (("risk", "domestic_abuse"), 1),
        (("resettlement_needs", "mental_health"), "yes"),
        (("person", "given_name"), 42),
    ],
)
def test_models_are_strict_about_json_types(path: tuple[str, ...], value: Any) -> None:
    doc = _release()
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert [e["pointer"] for e in _rejects("release-notice", doc).errors] == ["/" + "/".join(path)]


def test_dose_out_of_range_is_refused() -> None:
    doc = _examples("release-notice")[1]
    doc["resettlement_needs"]["opioid_substitution_therapy"]["daily_dose_mg"] = 1001
    assert [e["pointer"] for e in _rejects("release-notice", doc).errors] == [
        "/resettlement_needs/opioid_substitution_therapy/daily_dose_mg"
    ]


def test_dip_breach_needs_one_or_two_substances() -> None:
    doc = _examples("dip-breach")[0]
    doc["test"]["substances"] = []
    assert [e["pointer"] for e in _rejects("dip-breach", doc).errors] == ["/test/substances"]
    doc["test"]["substances"] = ["opiates", "alcohol"]
    assert [e["pointer"] for e in _rejects("dip-breach", doc).errors] == ["/test/substances/1"]


def test_licence_recall_missing_recall_block() -> None:
    doc = _examples("licence-recall")[1]
    del doc["recall"]
    assert [e["pointer"] for e in _rejects("licence-recall", doc).errors] == ["/recall"]


def test_names_are_stripped_and_blank_names_refused() -> None:
    doc = _release()
    doc["person"]["given_name"] = "  Alexis  "
    out = get_message_type("release-notice").validate_json(_body(doc))
    assert out["person"]["given_name"] == "Alexis"
    doc["person"]["given_name"] = "   "
    assert [e["pointer"] for e in _rejects("release-notice", doc).errors] == ["/person/given_name"]


def test_a_single_identifier_is_enough() -> None:
    for key in ("prison_number", "pnc_id", "crn"):
        doc = _release()
        for other in {"prison_number", "pnc_id", "crn"} - {key}:
            del doc["person"][other]
        out = get_message_type("release-notice").validate_json(_body(doc))
        assert set(out["person"]) & {"prison_number", "pnc_id", "crn"} == {key}


def test_schema_and_model_agree_on_null_identifiers(schemas_dir: Path) -> None:
    doc = _release()
    doc["person"] = {
        "prison_number": None,
        "given_name": "Alexis",
        "family_name": "Testperson",
        "date_of_birth": "1990-01-01",
    }
    # The model refuses it...
    _rejects("release-notice", doc)
    # ...so the published schema should refuse it as well.
    validator = _validator(schemas_dir, MESSAGE_TYPES["release-notice"])
    assert list(validator.iter_errors(doc)) != []
