"""Message intake over HTTP: every status the issue names, and durability before 202."""

from __future__ import annotations

import json

import httpx
import pytest

from services.core.runtime import Runtime
from tests.factories import example, release_notice
from tests.gateway.conftest import TokenFor, bearer, problem_of


async def test_accepted_release_notice_lists_recipients_fields_and_agreements(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post("/v1/messages/release-notice", json=release_notice(), headers=bearer(token))
    assert r.status_code == 202, r.text
    body = r.json()
    recipients = {x["party"]: x for x in body["recipients"]}
    assert set(recipients) == {
        "eastborough-pdu",
        "eastborough-police-iom",
        "eastborough-housing",
        "eastborough-recovery",
        "eastborough-vawg",
        "eastborough-vlo",
    }
    vawg = recipients["eastborough-vawg"]
    assert "release.date" in vawg["fields"]
    assert not [
        f for f in vawg["fields"] if f.startswith(("resettlement_needs", "destination.address"))
    ]
    assert vawg["agreements"] == [{"id": "ISA-EB-020", "version": "1.2"}]
    # explainable: the grant, and the prohibition and hard blocks that applied
    assert [g["flow"] for g in vawg["grants"]] == ["perpetrator-release-alert"]
    assert {(w["agreement"], w["rule"]) for w in vawg["withheld"]} == {
        ("ISA-EB-020", "perpetrator-release-alert"),
        ("ISA-EB-000", "health-data-stays-clinical"),
        ("ISA-EB-000", "no-release-address-to-victim-services"),
    }
    assert {(n["agreement"], n["outcome"]) for n in body["not_applied"]} == {
        ("ISA-EB-050", "not_in_force"),
        ("ISA-WS-003", "not_in_force"),
    }
    assert recipients["eastborough-housing"]["fields"] == sorted(
        recipients["eastborough-housing"]["fields"]
    )
    assert {"id": "ISA-EB-010", "version": "2.1"} in body["agreements"]
    # stored durably, with its outbox row, before the 202
    stored = await runtime.store.get_message(body["id"])
    assert stored is not None and stored["status"] == "pending"
    assert [p["id"] for p in await runtime.store.unpublished()] == [body["id"]]
    assert stored["person"].startswith("psn_")


async def test_no_token_is_401_problem(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/messages/release-notice", json=release_notice())
    assert r.status_code == 401
    assert problem_of(r)["code"] == "unauthenticated"
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_garbage_token_is_401(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/messages/release-notice", json=release_notice(), headers=bearer("not.a.token")
    )
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"


async def test_missing_scope_is_403(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/messages/release-notice", json=release_notice(), headers=bearer(token))
    assert r.status_code == 403
    p = problem_of(r)
    assert p["code"] == "insufficient_scope" and "publish:release-notice" in p["detail"]


async def test_share_no_agreement_permits_is_403_naming_the_reason(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    # housing is given the scope, but no agreement lets it send release notices
    token = await token_for("eastborough-housing", scopes=["publish:release-notice"])
    r = await http.post("/v1/messages/release-notice", json=release_notice(), headers=bearer(token))
    p = problem_of(r)
    assert r.status_code == 403 and p["code"] == "sharing_refused" and p["reason"] == "no_agreement"
    assert "eastborough-housing" in p["detail"]


async def test_lapsed_agreement_is_refused_naming_it(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        params={"purpose": "youth-transition"},
        json=release_notice(),
        headers=bearer(token),
    )
    p = problem_of(r)
    assert r.status_code == 403 and p["reason"] == "agreement_not_in_force"
    assert "ISA-WS-003" in p["detail"] and "expired" in p["detail"]
    # the refusal names every rule that failed
    assert {(x["agreement"], x["outcome"]) for x in p["rules"]} >= {("ISA-WS-003", "not_in_force")}
    assert await runtime.store.unpublished() == []
    refused = [a for a in await runtime.store.audit_entries() if a["event"] == "refused"]
    assert len(refused) == 1 and refused[0]["detail"]["reason"] == "agreement_not_in_force"
    assert "Alexis" not in json.dumps(refused[0]["detail"])


async def test_uncovered_purpose_is_refused(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        params={"purpose": "marketing"},
        json=release_notice(),
        headers=bearer(token),
    )
    assert r.status_code == 403 and problem_of(r)["reason"] == "purpose_not_covered"


async def test_purpose_narrows_recipients(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        params={"purpose": "victim-safety"},
        json=release_notice(),
        headers=bearer(token),
    )
    assert r.status_code == 202
    assert [x["party"] for x in r.json()["recipients"]] == ["eastborough-vawg", "eastborough-vlo"]


async def test_conditions_decide_who_receives(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    """No domestic-abuse flag: no VAWG alert; no OST: no treatment provider; low risk and no
    MAPPA: no IOM; housing only for its own area."""
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["risk"] = {"rosh_level": "low", "domestic_abuse": False}
    body["resettlement_needs"] = {"accommodation": True}
    body["destination"]["local_authority"] = "Northshire"
    body["victim_contact_scheme"] = False
    r = await http.post("/v1/messages/release-notice", json=body, headers=bearer(token))
    assert r.status_code == 202, r.text
    assert [x["party"] for x in r.json()["recipients"]] == ["eastborough-pdu"]
    outcomes = {(n["flow"], n["outcome"]) for n in r.json()["not_applied"]}
    assert {
        ("perpetrator-release-alert", "condition_false"),
        ("release-to-treatment", "condition_false"),
        ("release-to-iom", "condition_false"),
        ("release-to-housing", "condition_false"),
        ("victim-contact-scheme", "condition_false"),
    } <= outcomes


async def test_invalid_body_is_422_listing_each_pointer(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    body = release_notice()
    body["release"]["type"] = "whenever"
    body["person"]["date_of_birth"] = "1990-02-30"
    del body["destination"]["local_authority"]
    body["unexpected"] = True
    r = await http.post("/v1/messages/release-notice", json=body, headers=bearer(token))
    assert r.status_code == 422
    p = problem_of(r)
    assert p["code"] == "validation_failed"
    pointers = {e["pointer"] for e in p["errors"]}
    assert pointers == {
        "/release/type",
        "/person/date_of_birth",
        "/destination/local_authority",
        "/unexpected",
    }
    assert await runtime.store.unpublished() == []


async def test_malformed_json_is_422(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        content=b"{not json",
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert r.status_code == 422 and problem_of(r)["code"] == "validation_failed"


async def test_wrong_content_type_is_415(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        content=json.dumps(release_notice()),
        headers={**bearer(token), "content-type": "text/plain"},
    )
    assert r.status_code == 415 and problem_of(r)["code"] == "unsupported_media_type"


async def test_oversized_body_is_413(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post(
        "/v1/messages/release-notice",
        content=b"{" + b" " * 300_000 + b"}",
        headers={**bearer(token), "content-type": "application/json"},
    )
    assert r.status_code == 413 and problem_of(r)["code"] == "payload_too_large"


async def test_unknown_message_type_is_404(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("hmp-northgate")
    r = await http.post("/v1/messages/parole-board-decision", json={}, headers=bearer(token))
    assert r.status_code == 404
    p = problem_of(r)
    assert p["code"] == "unknown_message_type" and "release-notice" in p["detail"]


@pytest.mark.parametrize(
    "message_type,sender",
    [
        ("licence-recall", "eastborough-pdu"),
        ("dip-breach", "eastborough-police-dip"),
    ],
)
async def test_other_message_types_are_accepted(
    http: httpx.AsyncClient, token_for: TokenFor, message_type: str, sender: str
) -> None:
    token = await token_for(sender)
    r = await http.post(
        f"/v1/messages/{message_type}", json=example(message_type), headers=bearer(token)
    )
    assert r.status_code == 202, r.text
    assert r.json()["recipients"]


async def test_idempotency_key_replays_and_conflicts(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("hmp-northgate")
    h = {**bearer(token), "Idempotency-Key": "release-A1234BC-1"}
    first = await http.post("/v1/messages/release-notice", json=release_notice(), headers=h)
    again = await http.post("/v1/messages/release-notice", json=release_notice(), headers=h)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = await http.post(
        "/v1/messages/release-notice", json=release_notice(days_ahead=5), headers=h
    )
    assert other.status_code == 409 and problem_of(other)["code"] == "idempotency_key_reused"
    assert len(await runtime.store.unpublished()) == 1


async def test_openapi_documents_each_message_type(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    for name, model in [
        ("release-notice", "ReleaseNotice"),
        ("licence-recall", "LicenceRecall"),
        ("dip-breach", "DipBreach"),
    ]:
        op = doc["paths"][f"/v1/messages/{name}"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert model in doc["components"]["schemas"]
        assert {"202", "401", "403", "422"} <= set(op["responses"])
    assert doc["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]


async def test_idempotency_keys_expire(http: httpx.AsyncClient, runtime: Runtime) -> None:
    import datetime as dt

    from services.core.clients import create_client

    creds = await create_client(runtime, "hmp-northgate")

    async def token() -> str:
        r = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        )
        return str(r.json()["access_token"])

    key = {"Idempotency-Key": "release-A1234BC-2"}
    first = await http.post(
        "/v1/messages/release-notice",
        json=release_notice(),
        headers={**bearer(await token()), **key},
    )
    assert first.status_code == 202
    # within the period the same key with another body is a conflict
    clash = await http.post(
        "/v1/messages/release-notice",
        json=release_notice(days_ahead=6),
        headers={**bearer(await token()), **key},
    )
    assert clash.status_code == 409
    ttl = dt.timedelta(hours=runtime.settings.http.idempotency_key_ttl_hours, minutes=1)
    later = dt.datetime.now(dt.UTC) + ttl
    runtime.clock = lambda: later
    again = await http.post(
        "/v1/messages/release-notice",
        json=release_notice(days_ahead=6),
        headers={**bearer(await token()), **key},
    )
    assert again.status_code == 202, again.text  # the same client, the key expired: new message
    assert again.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in again.headers
    assert await runtime.store.get_message(first.json()["id"]) is not None
