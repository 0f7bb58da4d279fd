"""Subscriptions: the secret is shown once; an agency sees, deletes and rotates the keys of
only its own."""

from __future__ import annotations

import datetime as dt

import httpx

from services.core.runtime import Runtime
from services.core.webhooks import signing
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
    runtime.settings.webhooks.allow_http = False
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))
    assert r.status_code == 422 and problem_of(r)["code"] == "webhook_url_refused"
    assert "plain http is allowed in dev mode only" in problem_of(r)["detail"]


async def test_publisher_only_client_cannot_manage_subscriptions(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-police-dip")  # sends DIP breaches, receives nothing
    r = await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"


# -- signature schemes and secret rotation ----------------------------------------------------

V1A_HOOK = {**HOOK, "signature_scheme": "v1a"}
INBOX = {"message_types": ["release-notice"], "channel": "inbox"}


async def test_v1a_subscription_returns_its_public_key_and_never_a_secret(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("eastborough-vawg")
    r = await http.post("/v1/subscriptions", json=V1A_HOOK, headers=bearer(token))
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["signature_scheme"] == "v1a"
    assert created["secret"] is None
    assert created["public_key"].startswith("whpk_")
    assert created["previous_secret_until"] is None
    stored = await runtime.store.get_subscription(created["id"])
    assert stored is not None and stored["secret"].startswith("env1:")  # sealed at rest
    secret = runtime.signing_keys_at_rest.open_(created["id"], stored["secret"])
    assert secret is not None and secret.startswith("whsk_")
    assert signing.public_key(secret) == created["public_key"]
    assert secret.removeprefix("whsk_") not in r.text
    # the public key stays readable; the secret key is never shown
    listed = await http.get("/v1/subscriptions", headers=bearer(token))
    assert listed.json()[0]["public_key"] == created["public_key"]
    assert "whsk_" not in listed.text and "secret" not in listed.json()[0]


async def test_v1_subscription_shows_its_scheme_and_no_public_key(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    created = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))).json()
    assert created["signature_scheme"] == "v1" and created["public_key"] is None
    assert created["secret"].startswith("whsec_")


async def test_signature_scheme_is_refused_for_inbox_and_kafka(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    for channel in ("inbox", "kafka"):
        body = {**INBOX, "channel": channel, "signature_scheme": "v1a"}
        r = await http.post("/v1/subscriptions", json=body, headers=bearer(token))
        assert r.status_code == 422, r.text
        [error] = problem_of(r)["errors"]
        assert error["pointer"] == "/signature_scheme" and "webhooks only" in error["message"]
    r = await http.post(
        "/v1/subscriptions", json={**HOOK, "signature_scheme": "v2"}, headers=bearer(token)
    )
    assert r.status_code == 422
    assert "/signature_scheme" in {e["pointer"] for e in problem_of(r)["errors"]}


async def test_rotate_secret_returns_the_new_secret_and_the_overlap(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    token = await token_for("eastborough-vawg")
    created = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))).json()
    before = runtime.clock()
    r = await http.post(f"/v1/subscriptions/{created['id']}/rotate-secret", headers=bearer(token))
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["id"] == created["id"] and rotated["signature_scheme"] == "v1"
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    until = dt.datetime.fromisoformat(rotated["previous_secret_until"])
    overlap = dt.timedelta(seconds=runtime.settings.webhooks.secret_overlap_seconds)
    assert before + overlap <= until <= runtime.clock() + overlap
    stored = await runtime.store.get_subscription(created["id"])
    assert stored is not None
    opened = [
        runtime.signing_keys_at_rest.open_(created["id"], stored[k])
        for k in ("secret", "previous_secret")
    ]
    assert opened == [rotated["secret"], created["secret"]]
    # the overlap shows in the list, the secrets do not
    [listed] = (await http.get("/v1/subscriptions", headers=bearer(token))).json()
    assert listed["previous_secret_until"] == rotated["previous_secret_until"]
    assert "secret" not in listed
    # a chosen overlap, and 0: the previous key stops at once
    r = await http.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret",
        json={"overlap_seconds": 60},
        headers=bearer(token),
    )
    until = dt.datetime.fromisoformat(r.json()["previous_secret_until"])
    assert dt.timedelta(seconds=59) < until - runtime.clock() <= dt.timedelta(seconds=60)
    r = await http.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret",
        json={"overlap_seconds": 0},
        headers=bearer(token),
    )
    assert r.status_code == 200 and r.json()["previous_secret_until"] is None


async def test_rotate_a_v1a_key_returns_a_new_public_key(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    created = (await http.post("/v1/subscriptions", json=V1A_HOOK, headers=bearer(token))).json()
    r = await http.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret", json={}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["signature_scheme"] == "v1a" and rotated["secret"] is None
    assert rotated["public_key"].startswith("whpk_")
    assert rotated["public_key"] != created["public_key"]
    assert rotated["previous_secret_until"] is not None
    assert "whsk_" not in r.text


async def test_rotate_answers_404_for_another_agencys_a_deleted_or_an_inbox_subscription(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    owner = await token_for("eastborough-vawg")
    other = await token_for("eastborough-housing")
    theirs = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(owner))).json()
    inbox = (await http.post("/v1/subscriptions", json=INBOX, headers=bearer(owner))).json()
    gone = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(owner))).json()
    await http.delete(f"/v1/subscriptions/{gone['id']}", headers=bearer(owner))
    for token, sub_id in [
        (other, theirs["id"]),
        (owner, inbox["id"]),
        (owner, gone["id"]),
        (owner, "no-such-id"),
    ]:
        r = await http.post(f"/v1/subscriptions/{sub_id}/rotate-secret", headers=bearer(token))
        assert r.status_code == 404, r.text
        assert problem_of(r)["code"] == "not_found"
    stored = await runtime.store.get_subscription(theirs["id"])
    assert stored is not None
    opened = runtime.signing_keys_at_rest.open_(theirs["id"], stored["secret"])
    assert opened == theirs["secret"] and stored["previous_secret"] is None


async def test_rotate_overlap_out_of_range_is_422(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    token = await token_for("eastborough-vawg")
    created = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(token))).json()
    for body in (
        {"overlap_seconds": -1},
        {"overlap_seconds": 604_801},
        {"overlap_seconds": "a day"},
        {"overlap": 60},
    ):
        r = await http.post(
            f"/v1/subscriptions/{created['id']}/rotate-secret", json=body, headers=bearer(token)
        )
        assert r.status_code == 422, body
        assert problem_of(r)["code"] == "validation_failed"
    r = await http.post(
        f"/v1/subscriptions/{created['id']}/rotate-secret",
        json={"overlap_seconds": 604_800},
        headers=bearer(token),
    )
    assert r.status_code == 200, r.text


async def test_rotate_needs_the_manage_scope(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    owner = await token_for("eastborough-vawg")
    created = (await http.post("/v1/subscriptions", json=HOOK, headers=bearer(owner))).json()
    reader = await token_for("eastborough-vawg", scopes=["deliveries:read"])
    r = await http.post(f"/v1/subscriptions/{created['id']}/rotate-secret", headers=bearer(reader))
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"


async def test_openapi_documents_rotation(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    op = spec["paths"]["/v1/subscriptions/{subscription_id}/rotate-secret"]["post"]
    assert {"200", "404", "422"} <= op["responses"].keys()
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ok.endswith("/SubscriptionSecretRotated")
    assert "two signatures" in op["description"]
    body = op["requestBody"]
    assert not body.get("required", False)
    public = spec["components"]["schemas"]["SubscriptionPublic"]["properties"]
    assert {"signature_scheme", "public_key", "previous_secret_until"} <= public.keys()
