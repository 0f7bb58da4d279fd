"""GET /v1/decisions/{id}: explainable, field by field, for the sender and IG officers only."""

from __future__ import annotations

import httpx

from tests.factories import release_notice
from tests.gateway.conftest import TokenFor, bearer, problem_of


async def _publish(http: httpx.AsyncClient, token: str) -> str:
    r = await http.post("/v1/messages/release-notice", json=release_notice(), headers=bearer(token))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_sender_reads_the_decision_field_by_field(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("hmp-northgate")
    message_id = await _publish(http, token)
    r = await http.get(f"/v1/decisions/{message_id}", headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sender"] == "hmp-northgate" and body["status"] == "pending"
    vawg = next(x for x in body["recipients"] if x["party"] == "eastborough-vawg")
    assert vawg["fields"]["release.date"] == {
        "disclosed": True,
        "allowed_by": ["ISA-EB-020@1.2#perpetrator-release-alert"],
    }
    address = vawg["fields"]["destination.address.line1"]
    assert address["disclosed"] is False
    assert set(address["withheld_by"]) == {
        "ISA-EB-020@1.2#perpetrator-release-alert",
        "ISA-EB-000@3.0#no-release-address-to-victim-services",
    }
    assert vawg["fields"]["resettlement_needs.opioid_substitution_therapy.medication"][
        "withheld_by"
    ] == ["ISA-EB-000@3.0#health-data-stays-clinical"]
    assert vawg["fields"]["person.pnc_id"] == {
        "disclosed": False,
        "withheld_by": ["no flow permits it"],
    }
    # names of fields, never their values
    assert "Alexis" not in r.text and "methadone" not in r.text
    assert {n["agreement"] for n in body["not_applied"]} == {"ISA-EB-050", "ISA-WS-003"}


async def test_other_agencies_get_404_and_ig_officers_can_read(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    message_id = await _publish(http, await token_for("hmp-northgate"))
    recipient = await token_for("eastborough-vawg")
    r = await http.get(f"/v1/decisions/{message_id}", headers=bearer(recipient))
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"
    other_sender = await token_for("eastborough-pdu")
    r = await http.get(f"/v1/decisions/{message_id}", headers=bearer(other_sender))
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    ig = await token_for("eastborough-housing", scopes=["ig:audit"])
    r = await http.get(f"/v1/decisions/{message_id}", headers=bearer(ig))
    assert r.status_code == 200 and r.json()["message_id"] == message_id
    r = await http.get("/v1/decisions/no-such-id", headers=bearer(ig))
    assert r.status_code == 404
