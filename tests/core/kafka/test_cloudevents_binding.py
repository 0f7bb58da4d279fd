"""The CloudEvents Kafka binding (binary content mode) and the structured webhook body,
cross-checked with the CloudEvents SDK."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from services.core.crypto.keys import KeyStore
from services.core.errors import InvalidRequest, UnknownMessageType
from services.core.kafka.cloudevents import (
    SOURCE_PREFIX,
    EventRecord,
    from_record,
    structured,
    to_record,
)
from services.core.messages import MESSAGE_TYPES

ACCEPTED = dt.datetime(2026, 11, 20, 9, 30, 15, 123456, tzinfo=dt.UTC)
MESSAGE_ID = "01JD3Z8V0000000000000000AB"
SENDER = "hmp-northgate"


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, mt in MESSAGE_TYPES.items():
        extra = mt.model.model_config["json_schema_extra"]
        assert isinstance(extra, dict)
        for ex in extra["examples"]:
            out.append((name, mt.validate_json(json.dumps(ex).encode())))
    return out


EXAMPLES = [pytest.param(n, p, id=f"{n}-{i}") for i, (n, p) in enumerate(_examples())]


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore(Path(tmp_path_factory.mktemp("keys")))


def _person(keystore: KeyStore, payload: dict[str, Any]) -> str:
    p = payload["person"]
    identifier = p.get("prison_number") or p.get("pnc_id") or p["crn"]
    return keystore.pseudonymise(identifier)


@pytest.mark.parametrize(("name", "payload"), EXAMPLES)
def test_round_trip(name: str, payload: dict[str, Any], keystore: KeyStore) -> None:
    person = _person(keystore, payload)
    key, value, headers = to_record(MESSAGE_ID, SENDER, name, ACCEPTED, person, payload)
    assert key == person.encode()
    assert json.loads(value) == payload
    event = from_record(headers, value)
    assert event == EventRecord(
        id=MESSAGE_ID,
        source=f"urn:isa-broker:party:{SENDER}",
        type=f"org.isa-broker.{name}.v1",
        time=ACCEPTED,
        subject=person,
        data=payload,
    )
    assert event.sender == SENDER
    assert event.message_type == name


def test_headers_and_value_shape() -> None:
    payload = _examples()[0][1]
    _, value, headers = to_record(MESSAGE_ID, SENDER, "release-notice", ACCEPTED, "psn_x", payload)
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", MESSAGE_ID.encode()),
        ("ce_source", b"urn:isa-broker:party:hmp-northgate"),
        ("ce_type", b"org.isa-broker.release-notice.v1"),
        ("ce_time", b"2026-11-20T09:30:15.123456Z"),
        ("ce_subject", b"psn_x"),
        ("ce_dataschema", b"https://isa-broker.example/schemas/release-notice.schema.json"),
        ("content-type", b"application/json"),
    ]
    assert all(isinstance(v, bytes) for _, v in headers)
    # Compact, key-sorted JSON so the same payload always yields the same bytes.
    assert value == json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    assert value.startswith(b'{"destination":{')


def test_time_is_converted_to_utc() -> None:
    local = ACCEPTED.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    _, value, headers = to_record(MESSAGE_ID, SENDER, "dip-breach", local, "psn_x", {})
    assert dict(headers)["ce_time"] == b"2026-11-20T09:30:15.123456Z"
    assert from_record(headers, value).time == ACCEPTED


def test_whole_second_time_has_no_fraction() -> None:
    at = ACCEPTED.replace(microsecond=0)
    _, _, headers = to_record(MESSAGE_ID, SENDER, "dip-breach", at, "psn_x", {})
    assert dict(headers)["ce_time"] == b"2026-11-20T09:30:15Z"


@pytest.mark.parametrize(("name", "payload"), EXAMPLES)
def test_no_personal_data_in_headers_or_key(
    name: str, payload: dict[str, Any], keystore: KeyStore
) -> None:
    person = _person(keystore, payload)
    key, value, headers = to_record(MESSAGE_ID, SENDER, name, ACCEPTED, person, payload)
    p = payload["person"]
    personal = [
        p[k]
        for k in ("given_name", "family_name", "date_of_birth", "prison_number", "pnc_id", "crn")
        if k in p
    ]
    assert len(personal) >= 4
    exposed = [key] + [v for _, v in headers] + [k.encode() for k, _ in headers]
    for secret in personal:
        needle = secret.encode()
        assert all(needle not in blob for blob in exposed), secret
        # The value does carry it: the check above is not vacuous.
        assert needle in value


@pytest.mark.parametrize(("name", "payload"), EXAMPLES)
def test_record_parses_with_the_cloudevents_sdk(
    name: str, payload: dict[str, Any], keystore: KeyStore
) -> None:
    person = _person(keystore, payload)
    key, value, headers = to_record(MESSAGE_ID, SENDER, name, ACCEPTED, person, payload)
    message = KafkaMessage(headers=dict(headers), key=key, value=value)
    event = from_binary(message, JSONFormat(), CloudEvent)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == MESSAGE_ID
    assert event.get_source() == SOURCE_PREFIX + SENDER
    assert event.get_type() == MESSAGE_TYPES[name].ce_type
    assert event.get_time() == ACCEPTED
    assert event.get_subject() == person
    assert event.get_dataschema() == (f"https://isa-broker.example/schemas/{name}.schema.json")
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == payload
    assert event.get_extension("partitionkey") == person
    # No attribute beyond the ones we set (plus the key-derived partitionkey).
    assert set(event.get_attributes()) == {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "dataschema",
        "datacontenttype",
        "partitionkey",
    }


def test_unknown_message_type_is_refused() -> None:
    with pytest.raises(UnknownMessageType):
        to_record(MESSAGE_ID, SENDER, "parole-decision", ACCEPTED, "psn_x", {})


def _good() -> tuple[list[tuple[str, bytes]], bytes]:
    _, value, headers = to_record(MESSAGE_ID, SENDER, "licence-recall", ACCEPTED, "psn_x", {"a": 1})
    return headers, value


@pytest.mark.parametrize(
    "missing", ["ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "ce_specversion"]
)
def test_missing_attribute_is_invalid(missing: str) -> None:
    headers, value = _good()
    headers = [(k, v) for k, v in headers if k != missing]
    with pytest.raises(InvalidRequest, match="not a binary-mode CloudEvent"):
        from_record(headers, value)


def test_other_specversion_is_invalid() -> None:
    headers, value = _good()
    headers = [(k, b"0.3" if k == "ce_specversion" else v) for k, v in headers]
    with pytest.raises(InvalidRequest, match="unsupported CloudEvents specversion '0.3'"):
        from_record(headers, value)


@pytest.mark.parametrize("value", [b"", b"{not json", b"\xff\xfe"])
def test_value_that_is_not_json_is_invalid(value: bytes) -> None:
    headers, _ = _good()
    with pytest.raises(InvalidRequest):
        from_record(headers, value)


def test_bad_time_is_invalid() -> None:
    headers, value = _good()
    headers = [(k, b"yesterday" if k == "ce_time" else v) for k, v in headers]
    with pytest.raises(InvalidRequest):
        from_record(headers, value)


def test_headers_may_be_a_tuple_and_extra_headers_are_ignored() -> None:
    headers, value = _good()
    event = from_record(tuple([*headers, ("traceparent", b"00-abc-def-01")]), value)
    assert event.id == MESSAGE_ID


def test_non_utf8_header_is_invalid_request() -> None:
    headers, value = _good()
    with pytest.raises(InvalidRequest):
        from_record([*headers, ("x-junk", b"\xff")], value)


# --- structured mode ----------------------------------------------------------------------


def test_structured_body() -> None:
    headers, value = _good()
    event = from_record(headers, value)
    projected = {"person": {"given_name": "Jordan"}}
    body = structured(event, projected, {"isaagreement": "ISA-EB-001"})
    doc = json.loads(body)
    assert doc == {
        "specversion": "1.0",
        "id": MESSAGE_ID,
        "source": "urn:isa-broker:party:hmp-northgate",
        "type": "org.isa-broker.licence-recall.v1",
        "time": "2026-11-20T09:30:15.123456Z",
        "subject": "psn_x",
        "datacontenttype": "application/json",
        "isaagreement": "ISA-EB-001",
        "data": projected,
    }
    # Structured mode carries the projection it is given, not the record's full data.
    assert doc["data"] != event.data
    sdk_event = JSONFormat().read(CloudEvent, body)
    assert sdk_event.get_id() == MESSAGE_ID
    assert sdk_event.get_time() == ACCEPTED
    assert sdk_event.get_data() == projected
    assert sdk_event.get_extension("isaagreement") == "ISA-EB-001"


def test_structured_extra_cannot_replace_the_data() -> None:
    headers, value = _good()
    event = from_record(headers, value)
    doc = json.loads(structured(event, {"ok": True}, {"data": {"leak": True}}))
    assert doc["data"] == {"ok": True}


def test_record_data_is_not_shared_with_the_caller() -> None:
    payload = {"person": {"given_name": "A"}}
    original = copy.deepcopy(payload)
    _, value, headers = to_record(MESSAGE_ID, SENDER, "dip-breach", ACCEPTED, "psn_x", payload)
    from_record(headers, value).data["person"]["given_name"] = "changed"
    assert payload == original
