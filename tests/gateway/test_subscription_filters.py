"""Subscription filters and cohorts over HTTP: set at creation or with PATCH, shown in the
subscription; a filter that could never match is refused with the reason and nothing changes;
the cohort watch-list keeps pseudonyms only and shows counts and opaque handles; another
agency's subscription answers 404. Also the per-lane latency endpoint."""

from __future__ import annotations

from typing import Any

import httpx

from services.core.runtime import Runtime
from tests.gateway.conftest import TokenFor, bearer, problem_of

IOM, VAWG = "eastborough-police-iom", "eastborough-vawg"


def sub(types: list[str], filters: Any = None, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message_types": types, "channel": "inbox", **kw}
    if filters is not None:
        body["filters"] = filters
    return body


async def test_filters_are_set_at_creation_and_shown(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    h = bearer(await token_for(IOM))
    filters = {"local_authorities": ["Eastborough"], "risk": {"rosh_levels": ["high"]}}
    r = await http.post("/v1/subscriptions", json=sub(["release-notice"], filters), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["filters"] == {
        "local_authorities": ["Eastborough"],
        "probation_delivery_units": None,
        "risk": {
            "mappa": None,
            "rosh_levels": ["high"],
            "domestic_abuse": None,
            "national_security_division": None,
            "sex_offender_register": None,
        },
        "unlawfully_at_large": None,
        "cohort": None,
    }
    listed = (await http.get("/v1/subscriptions", headers=h)).json()
    assert listed[0]["filters"]["local_authorities"] == ["Eastborough"]
    plain = await http.post("/v1/subscriptions", json=sub(["release-notice"]), headers=h)
    assert plain.json()["filters"] is None


async def test_a_filter_that_could_never_match_is_refused_with_the_reason(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    vawg = bearer(await token_for(VAWG))
    cases = [
        # a field the agreements never disclose to the VAWG service
        ({"risk": {"mappa": True}}, ["release-notice"], "risk.mappa", "ISA-EB-020"),
        # identifiers the VAWG service never receives
        ({"cohort": True}, ["release-notice"], "cohort", "would tell it the value"),
        # a kind the message type does not have
        (
            {"local_authorities": ["Eastborough"]},
            ["licence-recall"],
            "local_authorities",
            "no field",
        ),
        # a message type no agreement in force sends it
        ({"cohort": True}, ["dip-breach"], "cohort", "no agreement in force has a flow"),
    ]
    for filters, types, name, why in cases:
        r = await http.post("/v1/subscriptions", json=sub(types, filters), headers=vawg)
        assert r.status_code == 422, (filters, r.text)
        p = problem_of(r)
        assert p["code"] == "filter_never_matches"
        assert name in p["detail"] and types[0] in p["detail"] and why in p["detail"], p
        assert p["problems"][0]["filter"] == name
    assert (await http.get("/v1/subscriptions", headers=vawg)).json() == []  # nothing created
    # controls: what the VAWG service does receive, and the same cohort filter for the IOM team
    ok = sub(["release-notice"], {"local_authorities": ["Eastborough"]})
    assert (await http.post("/v1/subscriptions", json=ok, headers=vawg)).status_code == 201
    iom = bearer(await token_for(IOM))
    ok = sub(["release-notice", "licence-recall"], {"cohort": True})
    assert (await http.post("/v1/subscriptions", json=ok, headers=iom)).status_code == 201
    # a malformed filter is a schema error naming the field
    bad = sub(["release-notice"], {"risk": {"rosh_levels": ["extreme"]}})
    r = await http.post("/v1/subscriptions", json=bad, headers=iom)
    assert r.status_code == 422 and problem_of(r)["code"] == "validation_failed"
    assert any("/filters/risk/rosh_levels/0" in e["pointer"] for e in problem_of(r)["errors"])


async def test_patch_sets_and_removes_filters(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    iom = bearer(await token_for(IOM))
    created = (
        await http.post("/v1/subscriptions", json=sub(["licence-recall"]), headers=iom)
    ).json()
    url = f"/v1/subscriptions/{created['id']}"
    r = await http.patch(url, json={"filters": {"unlawfully_at_large": True}}, headers=iom)
    assert r.status_code == 200, r.text
    assert r.json()["filters"]["unlawfully_at_large"] is True
    # refused: licence recalls have no local authority; the filters stay as they were
    r = await http.patch(url, json={"filters": {"local_authorities": ["X"]}}, headers=iom)
    assert r.status_code == 422 and problem_of(r)["code"] == "filter_never_matches"
    stored = await runtime.store.get_subscription(created["id"])
    assert stored is not None and stored["filters"] == {"unlawfully_at_large": True}
    r = await http.patch(url, json={}, headers=iom)  # filters is required (null removes)
    assert r.status_code == 422
    r = await http.patch(url, json={"filters": None}, headers=iom)
    assert r.status_code == 200 and r.json()["filters"] is None
    # another agency's subscription: 404, and nothing changed
    other = bearer(await token_for(VAWG))
    r = await http.patch(url, json={"filters": {"unlawfully_at_large": True}}, headers=other)
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    stored = await runtime.store.get_subscription(created["id"])
    assert stored is not None and stored["filters"] is None
    events = [a["event"] for a in await runtime.store.audit_entries()]
    assert events.count("subscription_filters_set") == 2


async def test_cohort_watch_list(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    iom = bearer(await token_for(IOM))
    body = sub(["release-notice"], {"cohort": True})
    created = (await http.post("/v1/subscriptions", json=body, headers=iom)).json()
    url = f"/v1/subscriptions/{created['id']}/cohort"
    change = {
        "add": [
            {"pnc_id": "24/123456X", "crn": "X123456"},
            {"prison_number": "B9876ZY"},
            {"crn": "X123456"},  # given twice: counted once
        ]
    }
    r = await http.put(url, json=change, headers=iom)
    assert r.status_code == 200, r.text
    assert r.json() == {"subscription_id": created["id"], "added": 3, "removed": 0, "total": 3}
    got = (await http.get(url, headers=iom)).json()
    assert got["total"] == 3 and len(got["members"]) == 3
    assert all(m.startswith("cm_") for m in got["members"])
    # the handles are not the pseudonyms messages carry, nor identifiers in clear
    carried = {runtime.keys.pseudonymise("pnc_id:24/123456X")[4:]}
    assert not any(m[3:] in carried for m in got["members"])
    assert "123456" not in r.text + str(got)
    r = await http.put(url, json={"remove": [{"crn": "X123456"}, {"crn": "Y000000"}]}, headers=iom)
    assert r.json()["removed"] == 1 and r.json()["total"] == 2
    # invalid identifiers: 422 naming the field, nothing changed
    for bad in ({"add": [{"pnc_id": "24-123456X"}]}, {"add": [{}]}, {}, {"add": [{"x": 1}]}):
        r = await http.put(url, json=bad, headers=iom)
        assert r.status_code == 422, bad
    assert (await http.get(url, headers=iom)).json()["total"] == 2
    # another agency: 404 for both routes, nothing changed
    other = bearer(await token_for(VAWG))
    assert (await http.get(url, headers=other)).status_code == 404
    r = await http.put(url, json={"remove": [{"prison_number": "B9876ZY"}]}, headers=other)
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    assert (await http.get(url, headers=iom)).json()["total"] == 2
    audit = [a for a in await runtime.store.audit_entries() if a["event"] == "cohort_changed"]
    assert [(a["detail"]["added"], a["detail"]["removed"]) for a in audit] == [(3, 0), (0, 1)]
    assert "123456" not in str(audit) and "B9876ZY" not in str(audit)


async def test_latency_by_lane(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    iom = bearer(await token_for(IOM))
    r = await http.get("/v1/deliveries/latency", headers=iom)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["received"]["priority"] == {
        "count": 0,
        "p50_ms": None,
        "p95_ms": None,
        "max_ms": None,
    }
    assert set(body["sent"]) == {"priority", "normal"}
    no_scope = bearer(await token_for(IOM, ["inbox:read"]))
    r = await http.get("/v1/deliveries/latency", headers=no_scope)
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"
