"""``/v1/audit/subject-access`` and ``/v1/audit/disclosures`` through HTTP: IG officers only,
JSON and CSV, identifiers validated with the field named."""

from __future__ import annotations

import csv
import io

import httpx

from services.core.runtime import Runtime
from services.core.scopes import ALL_SCOPES, IG_AUDIT_SCOPE
from tests.factories import release_notice
from tests.gateway.conftest import TokenFor, bearer, problem_of

PRISON = "hmp-northgate"
SAR = "/v1/audit/subject-access"


async def _publish(http: httpx.AsyncClient, token_for: TokenFor) -> tuple[str, dict[str, str]]:
    body = release_notice()
    token = await token_for(PRISON, ["publish:release-notice"])
    r = await http.post("/v1/messages/release-notice", json=body, headers=bearer(token))
    assert r.status_code == 202, r.text
    return str(r.json()["id"]), body["person"]


async def test_only_ig_audit_may_search_not_even_audit_read(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    others = await token_for(PRISON, sorted(set(ALL_SCOPES) - {IG_AUDIT_SCOPE}))
    for method, url, body in (
        ("POST", SAR, {"crn": "X100009"}),
        ("GET", "/v1/audit/disclosures", None),
    ):
        r = await http.request(method, url, json=body, headers=bearer(others))
        assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope", r.text


async def test_search_by_crn_finds_the_message_keyed_by_pnc_id_as_json_and_csv(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    message_id, person = await _publish(http, token_for)
    assert person.get("pnc_id") and person.get("crn")
    ig = bearer(await token_for(PRISON, [IG_AUDIT_SCOPE]))
    r = await http.post(SAR, json={"crn": person["crn"]}, headers=ig)
    assert r.status_code == 200, r.text
    lines = r.json()["disclosures"]
    assert {x["message_id"] for x in lines} == {message_id}
    accepted = next(x for x in lines if x["event"] == "accepted")
    assert accepted["sender"] == PRISON and accepted["agreements"]
    assert accepted["lawful_basis"]  # the agreements' legal gateways
    r = await http.post(SAR, params={"format": "csv"}, json={"crn": person["crn"]}, headers=ig)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    assert r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["message_id"] for row in rows} == {message_id}
    assert person["crn"] not in r.text and person["pnc_id"] not in r.text
    log = [e for e in await runtime.store.audit_entries() if e["event"] == "subject_access"]
    assert len(log) == 2 and person["crn"] not in repr(log)


async def test_bad_identifiers_are_422_naming_the_field(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    ig = bearer(await token_for(PRISON, [IG_AUDIT_SCOPE]))
    r = await http.post(SAR, json={"pnc_id": "not-a-pnc"}, headers=ig)
    assert r.status_code == 422, r.text
    assert any(e["pointer"] == "/pnc_id" for e in problem_of(r)["errors"]), r.text
    r = await http.post(SAR, json={}, headers=ig)
    assert r.status_code == 422, r.text
    r = await http.get("/v1/audit/disclosures", params={"version": "1.0"}, headers=ig)
    assert r.status_code == 422 and "version" in problem_of(r)["detail"], r.text


async def test_disclosures_by_agreement_as_csv(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    await _publish(http, token_for)
    ig = bearer(await token_for(PRISON, [IG_AUDIT_SCOPE]))
    r = await http.get(
        "/v1/audit/disclosures", params={"party": PRISON}, headers={**ig, "Accept": "text/csv"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    assert r.text.splitlines()[0].startswith("seq,at,event,")
    r = await http.get("/v1/audit/disclosures", params={"agreement": "no-such"}, headers=ig)
    assert r.status_code == 200 and r.json() == {"disclosures": [], "next_after": 0}, r.text
