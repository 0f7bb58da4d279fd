"""Subscriptions: the secret is shown once; an agency sees and deletes only its own."""

from __future__ import annotations

import httpx

from services.core.runtime import Runtime
from tests.gateway.conftest import TokenFor, bearer, problem_of

HOOK = {"message_types": ["release-notice"], "webhook": {"url": "http://127.0.0.1:9/hooks/x"}}


async def test_create_list_delete(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_") and created["status"] == "active"
    listed = (await http.get("/v1/subscriptions", headers=bearer(token))).json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    d = await http.delete(f"/v1/subscriptions/{created['id']}", headers=bearer(token))
    assert d.status_code == 204
    assert (await http.get("/v1/subscriptions", headers=bearer(token))).json() == []


async def test_another_agency_sees_nothing_and_gets_404(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    owner = await token_for("eastborough-vawg")
    other = await token_for("eastborough-housing")
    created = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(owner))).json()
    assert (await http.get("/v1/subscriptions", headers=bearer(other))).json() == []
    r = await http.delete(f"/v1/subscriptions/{created['id']}", headers=bearer(other))
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    still = (await http.get("/v1/subscriptions", headers=bearer(owner))).json()
    assert [s["id"] for s in still] == [created["id"]]


async def test_bad_subscription_bodies_are_422_naming_the_field(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    cases = [
        ({"message_types": ["parole-report"], "webhook": HOOK["webhook"]}, "/message_types/0"),
        ({"message_types": [], "webhook": HOOK["webhook"]}, "/message_types"),
        (
            {"message_types": ["release-notice"], "webhook": {"url": "ftp://x.example/h"}},
            "/webhook/url",
        ),
        ({"message_types": ["release-notice"]}, "/webhook"),
    ]
    for body, pointer in cases:
        r = await http.post("/v1/subscriptions", json=body, headers=bearer(token))
        assert r.status_code == 422, body
        assert pointer in {e["pointer"] for e in problem_of(r)["errors"]}, r.json()


async def test_http_webhooks_are_refused_when_not_allowed(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    runtime.settings.webhook_allow_http = False
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))
    assert r.status_code == 400 and "https" in problem_of(r)["detail"]


async def test_publisher_only_client_cannot_manage_subscriptions(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-police-dip")  # sends DIP breaches, receives nothing
    r = await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"
