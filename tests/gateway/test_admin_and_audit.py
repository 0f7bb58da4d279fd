"""Operator endpoints (scope admin) and the disclosure log (audit:read, ig:audit)."""

from __future__ import annotations

import datetime as dt

import httpx

from services.core.crypto import recipient
from services.core.runtime import Runtime
from tests.gateway.conftest import TokenFor, basic, bearer, problem_of

PRISON = "hmp-northgate"
VAWG = "eastborough-vawg"


async def test_admin_registers_lists_and_disables_clients(
    http: httpx.AsyncClient, runtime: Runtime, token_for: TokenFor
) -> None:
    admin = bearer(await token_for(PRISON, ["admin"]))
    r = await http.post("/v1/admin/clients", json={"party": VAWG}, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    assert created["client_secret"].startswith("cs_")
    assert "admin" not in created["scopes"]  # least privilege by default

    listed = (await http.get("/v1/admin/clients", headers=admin)).json()
    row = next(c for c in listed if c["client_id"] == created["client_id"])
    assert row["party"] == VAWG and row["disabled"] is False
    assert all("secret" not in k for c in listed for k in c)

    # the new client works ...
    auth = basic(created["client_id"], created["client_secret"])
    token = (
        await http.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=auth)
    ).json()["access_token"]
    assert (await http.get("/v1/subscriptions", headers=bearer(token))).status_code == 200

    # ... until disabled: no new token, and the one it holds stops working
    r = await http.post(f"/v1/admin/clients/{created['client_id']}/disable", headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = await http.post("/oauth/token", data={"grant_type": "client_credentials"}, headers=auth)
    assert r.status_code == 401
    http._transport.app.state.tokens._status.clear()  # type: ignore[attr-defined]  # noqa: SLF001 - skip the 10 s cache
    r = await http.get("/v1/subscriptions", headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["code"] == "unauthenticated"

    r = await http.post("/v1/admin/clients/nobody.123/disable", headers=admin)
    assert r.status_code == 404
    events = [e["event"] for e in await runtime.store.audit_entries()]
    assert {"client_registered", "admin_client_registered", "client_disabled"} <= set(events)


async def test_admin_endpoints_need_the_admin_scope(
    http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    agency = bearer(await token_for(PRISON))  # default scopes: never admin
    for method, path in [
        ("GET", "/v1/admin/clients"),
        ("POST", "/v1/admin/clients/x/disable"),
        ("GET", "/v1/admin/signing-keys"),
        ("POST", "/v1/admin/signing-keys/rotate"),
        ("GET", "/v1/admin/delivery-signing-keys"),
        ("POST", "/v1/admin/delivery-signing-keys/rotate"),
    ]:
        r = await http.request(method, path, headers=agency)
        assert r.status_code == 403, (method, path)
        assert problem_of(r)["code"] == "insufficient_scope"
    r = await http.post("/v1/admin/clients", json={"party": VAWG}, headers=agency)
    assert r.status_code == 403


async def test_admin_rotates_the_signing_key(
    http: httpx.AsyncClient, runtime: Runtime, token_for: TokenFor
) -> None:
    admin = bearer(await token_for(PRISON, ["admin"]))
    before = (await http.get("/v1/admin/signing-keys", headers=admin)).json()
    assert [k["state"] for k in before] == ["active"]
    r = await http.post(
        "/v1/admin/signing-keys/rotate", json={"publish_ahead_seconds": 600}, headers=admin
    )
    assert r.status_code == 200, r.text
    states = {k["kid"]: k["state"] for k in r.json()}
    assert states[before[0]["kid"]] == "active" and sorted(states.values()) == ["active", "next"]
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert {k["kid"] for k in jwks["keys"]} == set(states)
    assert any(e["event"] == "signing_key_rotated" for e in await runtime.store.audit_entries())


async def test_delivery_signing_keys_are_published_apart_and_rotated_by_the_admin(
    http: httpx.AsyncClient, runtime: Runtime, token_for: TokenFor
) -> None:
    """The keys that sign agencies' records: published without authentication at their own
    well-known URL (named in the metadata), never mixed with the token-signing keys, and
    rotated through their own admin endpoint with the old key still published."""
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    url = metadata["isa_delivery_signing_jwks_uri"]
    assert url == runtime.settings.issuer + "/.well-known/delivery-signing-keys.json"
    r = await http.get("/.well-known/delivery-signing-keys.json")  # no token
    assert r.status_code == 200, r.text
    [published] = r.json()["keys"]
    assert published["kid"] == runtime.keys.delivery_signing_key().kid
    assert (published["alg"], published["crv"]) == ("ES256", "P-256") and "d" not in published
    tokens = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
    assert published["kid"] not in tokens

    admin = bearer(await token_for(PRISON, ["admin"]))
    [listed] = (await http.get("/v1/admin/delivery-signing-keys", headers=admin)).json()
    assert listed["kid"] == published["kid"] and listed["state"] == "active"
    assert listed["thumbprint"] == recipient.BrokerKeys(r.json()).thumbprints()[listed["kid"]]
    r = await http.post(
        "/v1/admin/delivery-signing-keys/rotate", json={"publish_ahead_seconds": 0}, headers=admin
    )
    assert r.status_code == 200, r.text
    states = {k["kid"]: k["state"] for k in r.json()}
    assert states[published["kid"]] == "retired" and sorted(states.values()) == [
        "active",
        "retired",
    ]
    retired = next(k for k in r.json() if k["state"] == "retired")
    kept = dt.datetime.fromisoformat(retired["withdrawn_at"]) - dt.datetime.fromisoformat(
        retired["retires_at"]
    )
    assert kept == dt.timedelta(days=runtime.settings.tokens.delivery_signing_key_grace_days)
    after = (await http.get("/.well-known/delivery-signing-keys.json")).json()
    assert {k["kid"] for k in after["keys"]} == set(states)
    # the token-signing keys did not move
    assert {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]} == tokens
    events = [e["event"] for e in await runtime.store.audit_entries()]
    assert "delivery_signing_key_rotated" in events and "signing_key_rotated" not in events


async def test_audit_log_own_entries_only_and_all_for_ig(
    http: httpx.AsyncClient, runtime: Runtime, token_for: TokenFor
) -> None:
    await runtime.store.audit("delivered", actor=PRISON, recipient=VAWG, message_id="m-1")
    await runtime.store.audit("delivered", actor="eastborough-pdu", recipient="eastborough-housing")

    no_scope = bearer(await token_for(VAWG))
    r = await http.get("/v1/audit", headers=no_scope)
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"

    vawg = bearer(await token_for(VAWG, ["audit:read"]))
    own = (await http.get("/v1/audit", headers=vawg)).json()["entries"]
    assert own and all(VAWG in (e["actor"], e["recipient"]) for e in own)
    assert not any(e["actor"] == "eastborough-pdu" for e in own)

    ig = bearer(await token_for("eastborough-pdu", ["ig:audit"]))
    page = (await http.get("/v1/audit", params={"limit": 2}, headers=ig)).json()
    assert len(page["entries"]) == 2
    rest = (await http.get("/v1/audit", params={"after": page["next_after"]}, headers=ig)).json()
    everything = page["entries"] + rest["entries"]
    assert {e["actor"] for e in everything} >= {PRISON, "eastborough-pdu", VAWG}
    # reading is itself recorded
    assert any(e["event"] == "audit_read" for e in await runtime.store.audit_entries())
