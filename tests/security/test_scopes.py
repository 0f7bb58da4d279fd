"""Attacks on authorisation by scope: asking the token endpoint for more than was granted
(400 ``invalid_scope``), and calling each /v1 operation with a token that holds every scope
but the one it needs (403 ``insufficient_scope``). The table of operations is checked against
the OpenAPI document, so an operation added without a scope test fails this suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from services.core.clients import create_client
from services.core.runtime import Runtime
from services.core.scopes import ADMIN_SCOPE, ALL_SCOPES, IG_AUDIT_SCOPE, default_scopes
from services.gateway.app import create_app
from tests.factories import example, release_notice
from tests.gateway.conftest import basic, problem_of
from tests.security.helpers import (
    FORM,
    PDU,
    POLICE_DIP,
    PRISON,
    TOKEN,
    VAWG,
    bearer,
    token_of,
)


@dataclass(frozen=True)
class Operation:
    scope: str
    party: str = VAWG
    json: Any = None
    #: scopes that stand in for ``scope`` (an IG officer reads any decision and all the log)
    instead: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


MANAGE = "subscriptions:manage"
OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "/v1/messages/release-notice"): Operation(
        "publish:release-notice", PRISON, release_notice()
    ),
    ("POST", "/v1/messages/licence-recall"): Operation(
        "publish:licence-recall", PDU, example("licence-recall")
    ),
    ("POST", "/v1/messages/dip-breach"): Operation(
        "publish:dip-breach", POLICE_DIP, example("dip-breach")
    ),
    ("GET", "/v1/subscriptions"): Operation(MANAGE),
    ("POST", "/v1/subscriptions"): Operation(
        MANAGE, json={"message_types": ["release-notice"], "channel": "inbox"}
    ),
    ("POST", "/v1/subscriptions/{subscription_id}/enable"): Operation(MANAGE),
    ("DELETE", "/v1/subscriptions/{subscription_id}"): Operation(MANAGE),
    ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"): Operation(MANAGE),
    ("PATCH", "/v1/subscriptions/{subscription_id}"): Operation(MANAGE, json={"filters": None}),
    ("PUT", "/v1/subscriptions/{subscription_id}/cohort"): Operation(
        MANAGE, json={"add": [{"crn": "X123456"}]}
    ),
    ("GET", "/v1/subscriptions/{subscription_id}/cohort"): Operation(MANAGE),
    ("POST", "/v1/encryption-keys"): Operation(MANAGE, json={"jwk": {"kty": "EC"}}),
    ("GET", "/v1/encryption-keys"): Operation(MANAGE),
    ("DELETE", "/v1/encryption-keys/{kid}"): Operation(MANAGE),
    ("POST", "/v1/kafka-credential"): Operation(MANAGE),
    ("GET", "/v1/deliveries/latency"): Operation("deliveries:read"),
    ("GET", "/v1/deliveries"): Operation("deliveries:read"),
    ("GET", "/v1/deliveries/{delivery_id}"): Operation("deliveries:read"),
    ("GET", "/v1/dead-letters"): Operation("deliveries:read"),
    ("POST", "/v1/dead-letters/{delivery_id}/replay"): Operation(MANAGE),
    ("POST", "/v1/dead-letters/replay"): Operation(MANAGE, json={"since": "2020-01-01T00:00:00Z"}),
    ("GET", "/v1/inbox"): Operation("inbox:read"),
    ("POST", "/v1/inbox/ack"): Operation("inbox:ack", json={"cursor": 0}),
    ("GET", "/v1/decisions/{message_id}"): Operation(
        "decisions:read", PRISON, instead=(IG_AUDIT_SCOPE,)
    ),
    ("GET", "/v1/audit"): Operation("audit:read", instead=(IG_AUDIT_SCOPE,)),
    # IG officers only: audit:read does not stand in
    ("POST", "/v1/audit/subject-access"): Operation(IG_AUDIT_SCOPE, json={"crn": "X100009"}),
    ("GET", "/v1/audit/disclosures"): Operation(IG_AUDIT_SCOPE),
    ("GET", "/v1/retention/due"): Operation(IG_AUDIT_SCOPE),
    ("GET", "/v1/reports/timeliness"): Operation("reports:read", PRISON, instead=(IG_AUDIT_SCOPE,)),
    ("GET", "/v1/messages"): Operation("messages:read", PRISON),
    ("GET", "/v1/messages/{message_id}"): Operation("messages:read", PRISON),
    ("POST", "/v1/messages/{message_id}/amend"): Operation(
        "publish:release-notice", PRISON, release_notice()
    ),
    ("POST", "/v1/messages/{message_id}/cancel"): Operation(
        "publish:release-notice", PRISON, {"reason": "other"}
    ),
    ("POST", "/v1/messages/{message_id}/confirm-release"): Operation(
        "publish:release-notice", PRISON, {"released_at": "2020-01-01T00:00:00Z"}
    ),
    ("POST", "/v1/messages/{message_id}/outcome"): Operation(
        "publish:dip-breach", POLICE_DIP, {"outcome": "arrested", "date": "2020-01-01"}
    ),
    ("GET", "/v1/duties"): Operation("duties:read"),
    ("GET", "/v1/duties/{duty_id}"): Operation("duties:read"),
    ("POST", "/v1/duties/{duty_id}/acknowledge"): Operation(
        "duties:ack", json={"action": "victim_contacted"}
    ),
    ("GET", "/v1/dip-breaches"): Operation("duties:read", POLICE_DIP),
    ("GET", "/v1/admin/clients"): Operation(ADMIN_SCOPE),
    ("POST", "/v1/admin/clients"): Operation(ADMIN_SCOPE, json={"party": VAWG}),
    ("POST", "/v1/admin/clients/{client_id}/disable"): Operation(ADMIN_SCOPE),
    ("POST", "/v1/admin/clients/{client_id}/enable"): Operation(ADMIN_SCOPE),
    ("GET", "/v1/admin/signing-keys"): Operation(ADMIN_SCOPE),
    ("POST", "/v1/admin/signing-keys/rotate"): Operation(
        ADMIN_SCOPE, json={"publish_ahead_seconds": 600}
    ),
    ("GET", "/v1/admin/delivery-signing-keys"): Operation(ADMIN_SCOPE),
    ("POST", "/v1/admin/delivery-signing-keys/rotate"): Operation(
        ADMIN_SCOPE, json={"publish_ahead_seconds": 600}
    ),
}


def _url(path: str) -> str:
    """The path with every id filled in by one that does not exist: the scope check comes
    first, so the answer is 403 without the scope and 404 with it."""
    out = path
    for name in ("subscription_id", "delivery_id", "message_id", "client_id", "duty_id", "kid"):
        out = out.replace("{" + name + "}", "no-such-id")
    return out


def v1_operations(runtime: Runtime) -> set[tuple[str, str]]:
    spec = create_app(runtime).openapi()
    return {
        (method.upper(), path)
        for path, ops in spec["paths"].items()
        if path.startswith("/v1/")
        for method in ops
    }


async def test_the_table_covers_every_v1_operation(runtime: Runtime) -> None:
    documented = v1_operations(runtime)
    assert documented == set(OPERATIONS), (
        f"without a scope test: {sorted(documented - set(OPERATIONS))}; "
        f"no longer in the API: {sorted(set(OPERATIONS) - documented)}"
    )


async def test_each_operation_refuses_a_token_without_its_scope(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    failures = []
    for (method, path), op in OPERATIONS.items():
        lacking = sorted(set(ALL_SCOPES) - {op.scope, *op.instead})
        token, _ = await token_of(http, runtime, op.party, lacking)
        r = await http.request(method, _url(path), json=op.json, headers=bearer(token))
        if r.status_code != 403 or problem_of(r)["code"] != "insufficient_scope":
            failures.append((method, path, "without", op.scope, r.status_code, r.text[:200]))
        elif op.scope not in problem_of(r)["detail"]:
            failures.append((method, path, "detail does not name", op.scope, r.text[:200]))
    assert not failures, failures


async def test_each_operation_accepts_its_scope_alone(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Control: with exactly its scope (or the one that stands in for it) the same request
    passes the scope check, so the refusals above are for the missing scope."""
    failures = []
    for (method, path), op in OPERATIONS.items():
        for scope in (op.scope, *op.instead):
            token, _ = await token_of(http, runtime, op.party, [scope])
            r = await http.request(method, _url(path), json=op.json, headers=bearer(token))
            if r.status_code in (401, 403) or r.status_code >= 500:
                failures.append((method, path, scope, r.status_code, r.text[:200]))
    assert not failures, failures


async def test_a_release_notice_scope_cannot_publish_a_licence_recall(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    # the probation service may send recalls under the agreements; the token may not
    token, _ = await token_of(http, runtime, PDU, ["publish:release-notice"])
    r = await http.post(
        "/v1/messages/licence-recall", json=example("licence-recall"), headers=bearer(token)
    )
    assert r.status_code == 403, r.text
    body = problem_of(r)
    assert body["code"] == "insufficient_scope" and "publish:licence-recall" in body["detail"]
    assert [e for e in await runtime.store.audit_entries() if e["event"] == "accepted"] == []


@pytest.mark.parametrize(
    ("party", "scope"),
    [
        (PRISON, "admin"),
        (PRISON, "ig:audit"),
        (PRISON, "audit:read"),
        (PRISON, "publish:dip-breach"),
        (PRISON, "publish:licence-recall"),
        (VAWG, "publish:release-notice"),
        (VAWG, "decisions:read"),
        (VAWG, "inbox:read superuser"),
        (VAWG, "inbox:read admin"),
    ],
)
async def test_asking_for_a_scope_not_granted_is_invalid_scope(
    http: httpx.AsyncClient, runtime: Runtime, party: str, scope: str
) -> None:
    creds = await create_client(runtime, party)
    auth = basic(creds["client_id"], creds["client_secret"])
    r = await http.post(TOKEN, data={**FORM, "scope": scope}, headers=auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_scope"
    assert "access_token" not in r.json()


async def test_asking_for_fewer_scopes_gets_only_those(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    creds = await create_client(runtime, VAWG)
    auth = basic(creds["client_id"], creds["client_secret"])
    r = await http.post(TOKEN, data={**FORM, "scope": "inbox:read"}, headers=auth)
    assert r.status_code == 200 and r.json()["scope"] == "inbox:read"
    token = r.json()["access_token"]
    assert (await http.get("/v1/inbox", headers=bearer(token))).status_code == 200
    r = await http.get("/v1/subscriptions", headers=bearer(token))
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"


async def test_default_scopes_never_include_admin_or_audit(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    privileged = {ADMIN_SCOPE, IG_AUDIT_SCOPE, "audit:read"}
    for party in runtime.engine.policies.parties:
        assert not privileged & set(default_scopes(runtime.engine.policies, party)), party
        creds = await create_client(runtime, party)
        assert not privileged & set(creds["scopes"]), party
        auth = basic(creds["client_id"], creds["client_secret"])
        r = await http.post(TOKEN, data=FORM, headers=auth)
        assert r.status_code == 200, r.text
        assert not privileged & set(r.json()["scope"].split()), party
    # an operator registering a client without naming scopes grants none of them either
    admin, _ = await token_of(http, runtime, PRISON, [ADMIN_SCOPE])
    r = await http.post("/v1/admin/clients", json={"party": VAWG}, headers=bearer(admin))
    assert r.status_code == 201 and not privileged & set(r.json()["scopes"])


async def test_the_openapi_document_names_the_scope_each_operation_needs(
    runtime: Runtime,
) -> None:
    """What the routes enforce (the table above is checked against behaviour) is what the
    document tells integrators: one security alternative per accepted scope."""
    spec = create_app(runtime).openapi()
    for (method, path), op in OPERATIONS.items():
        declared = spec["paths"][path][method.lower()]["security"]
        assert declared == [{"oauth2": [s]} for s in (op.scope, *op.instead)], (method, path)
