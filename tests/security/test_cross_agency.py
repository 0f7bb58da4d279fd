"""One agency reaching another's objects (OWASP API1:2023, broken object level authorisation).

Agency A is the VAWG service (subscriptions of every channel, deliveries delivered and
dead-lettered, inbox entries and notices) together with the prison whose release notice
reached it (the message and its decision). Agency B is the housing service, a recipient of the
same notice, holding every scope an agency can hold (all but ``admin`` and ``ig:audit``).

B gets 404 - never 403, which would confirm the id exists - on every route that takes one
of A's ids; B's lists never show A's objects; selectors naming A's objects do nothing. The
routes are taken from the OpenAPI document: a route added without a case here fails."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.crypto import recipient
from services.core.runtime import Runtime
from services.gateway.app import create_app
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import example, release_notice
from tests.gateway.conftest import problem_of
from tests.security.helpers import (
    AGENCY_SCOPES,
    HOUSING,
    PDU,
    POLICE_DIP,
    PRISON,
    VAWG,
    bearer,
    gateway,
    route_and_settle,
    token_of,
)

pytestmark = pytest.mark.integration

#: a port nothing listens on: each attempt fails at once (connection refused)
DEAD_URL = "http://127.0.0.1:9/hooks/vawg"


@dataclass
class World:
    runtime: Runtime
    http: httpx.AsyncClient
    a: dict[str, str]  # VAWG's token (every agency scope)
    sender: dict[str, str]  # the prison's token
    b: dict[str, str]  # housing's token (every agency scope)
    dip_sender: dict[str, str] = field(default_factory=dict)  # the police DIP team's token
    a_subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    a_deliveries: list[dict[str, Any]] = field(default_factory=list)
    a_dead_letters: list[dict[str, Any]] = field(default_factory=list)
    b_deliveries: list[dict[str, Any]] = field(default_factory=list)
    a_duties: list[dict[str, Any]] = field(default_factory=list)  # A's acknowledgement duties
    a_keys: list[str] = field(default_factory=list)  # A's encryption key ids
    message_id: str = ""
    #: a DIP breach from the police to treatment and probation: nothing of B's
    dip_message_id: str = ""

    @property
    def a_ids(self) -> set[str]:
        """Every id of A's that B must never see."""
        subs = {s["id"] for s in self.a_subscriptions.values()}
        ids = subs | {d["id"] for d in self.a_deliveries} | {d["id"] for d in self.a_duties}
        return ids | set(self.a_keys)


@pytest.fixture
async def world(tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[World]:
    settings = make_settings(
        tmp_path,
        dispatch_poll_seconds=0.05,
        webhook_retry_schedule=(0, 0.05, 0.05),
        # B probes every id route in one go: a burst bigger than the default allows
        rate_limit_per_minute=6000,
    )
    rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    try:
        async with gateway(rt) as (_, http):
            yield await _build(rt, http)
    finally:
        await rt.aclose()


async def _build(rt: Runtime, http: httpx.AsyncClient) -> World:
    a, _ = await token_of(http, rt, VAWG, AGENCY_SCOPES)
    sender, _ = await token_of(http, rt, PRISON)
    b, _ = await token_of(http, rt, HOUSING, AGENCY_SCOPES)
    w = World(rt, http, bearer(a), bearer(sender), bearer(b))

    async def subscribe(who: dict[str, str], **body: Any) -> dict[str, Any]:
        body = {"message_types": ["release-notice"], **body}
        r = await http.post("/v1/subscriptions", json=body, headers=who)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = r.json()
        return created

    subs = w.a_subscriptions
    subs["webhook_v1"] = await subscribe(w.a, webhook={"url": DEAD_URL})
    subs["webhook_v1a"] = await subscribe(w.a, webhook={"url": DEAD_URL}, signature_scheme="v1a")
    subs["inbox"] = await subscribe(w.a, channel="inbox")
    _, public = recipient.generate_key("vawg-key-1")
    r = await http.post("/v1/encryption-keys", json={"jwk": public}, headers=w.a)
    assert r.status_code == 201, r.text
    w.a_keys = [r.json()["kid"]]
    subs["kafka"] = await subscribe(w.a, channel="kafka")
    subs["disabled"] = await subscribe(w.a, webhook={"url": DEAD_URL + "/off"})
    assert await rt.store.disable_subscription(subs["disabled"]["id"], "test: disabled") == []
    await subscribe(w.b, channel="inbox")

    r = await http.post("/v1/messages/release-notice", json=release_notice(), headers=w.sender)
    assert r.status_code == 202, r.text
    w.message_id = r.json()["id"]
    assert {VAWG, HOUSING} <= {x["party"] for x in r.json()["recipients"]}
    await route_and_settle(rt, w.message_id)
    w.a_duties = await rt.store.list_duties(VAWG, message_id=w.message_id)
    assert w.a_duties, "the release alert puts a duty on the VAWG service"
    police, _ = await token_of(http, rt, POLICE_DIP)
    r = await http.post(
        "/v1/messages/dip-breach", json=example("dip-breach"), headers=bearer(police)
    )
    assert r.status_code == 202 and HOUSING not in {x["party"] for x in r.json()["recipients"]}
    w.dip_message_id = r.json()["id"]
    w.dip_sender = bearer(police)
    await rt.store.add_notice(VAWG, json.dumps({"type": "test.notice", "data": {"for": VAWG}}))

    rows = await rt.store.list_deliveries(message_id=w.message_id)
    w.a_deliveries = [d for d in rows if d["recipient"] == VAWG]
    w.b_deliveries = [d for d in rows if d["recipient"] == HOUSING]
    w.a_dead_letters = [d for d in w.a_deliveries if d["status"] == "dead_lettered"]
    by_sub = {d["subscription_id"]: d["status"] for d in w.a_deliveries}
    assert by_sub == {
        subs["webhook_v1"]["id"]: "dead_lettered",
        subs["webhook_v1a"]["id"]: "dead_lettered",
        subs["inbox"]["id"]: "delivered",
        subs["kafka"]["id"]: "delivered",
        subs["disabled"]["id"]: "dead_lettered",
    }, by_sub
    assert [d["status"] for d in w.b_deliveries] == ["delivered"]
    return w


# -- what A's objects look like before and after B's attempts ---------------------------------


async def _snapshot(w: World) -> dict[str, Any]:
    store = w.runtime.store
    subs = {s["id"]: s for s in await store.list_subscriptions(VAWG)}
    deliveries = {d["id"]: d for d in await store.list_deliveries(recipient=VAWG)}
    return {
        "subscriptions": {
            k: (s["status"], s["secret"], s["previous_secret"], s["url"], s["filters"])
            for k, s in subs.items()
        },
        "cohorts": {k: await store.cohort_of(VAWG, k) for k in subs},
        "deliveries": {k: (d["status"], d["attempts"]) for k, d in deliveries.items()},
        "inbox": [e["seq"] for e in await store.inbox_after(VAWG, 0, 1000)],
        "duties": {d["id"]: (d["status"], d["action"]) for d in await store.list_duties(VAWG)},
        "keys": [(k["kid"], k["retired_at"]) for k in await store.party_keys(VAWG)],
    }


# -- routes that take an id --------------------------------------------------------------------

Probe = Callable[[World], list[tuple[str, str, Any]]]  # -> [(method, url, json)]


def _each_subscription(method: str, suffix: str = "", body: Any = None) -> Probe:
    return lambda w: [
        (method, f"/v1/subscriptions/{s['id']}{suffix}", body) for s in w.a_subscriptions.values()
    ]


#: (method, OpenAPI path) -> the requests B makes with A's ids; each must answer 404
ID_ROUTES: dict[tuple[str, str], Probe] = {
    ("DELETE", "/v1/subscriptions/{subscription_id}"): _each_subscription("DELETE"),
    ("POST", "/v1/subscriptions/{subscription_id}/enable"): _each_subscription("POST", "/enable"),
    ("POST", "/v1/subscriptions/{subscription_id}/rotate-secret"): _each_subscription(
        "POST", "/rotate-secret", {"overlap_seconds": 0}
    ),
    ("PATCH", "/v1/subscriptions/{subscription_id}"): _each_subscription(
        "PATCH", "", {"filters": {"local_authorities": ["Eastborough"]}}
    ),
    ("PUT", "/v1/subscriptions/{subscription_id}/cohort"): _each_subscription(
        "PUT", "/cohort", {"add": [{"crn": "X123456"}], "remove": [{"pnc_id": "24/123456X"}]}
    ),
    ("GET", "/v1/subscriptions/{subscription_id}/cohort"): _each_subscription("GET", "/cohort"),
    ("DELETE", "/v1/encryption-keys/{kid}"): lambda w: [
        ("DELETE", f"/v1/encryption-keys/{kid}", None) for kid in w.a_keys
    ],
    ("GET", "/v1/deliveries/{delivery_id}"): lambda w: [
        ("GET", f"/v1/deliveries/{d['id']}", None) for d in w.a_deliveries
    ],
    ("POST", "/v1/dead-letters/{delivery_id}/replay"): lambda w: [
        ("POST", f"/v1/dead-letters/{d['id']}/replay", None) for d in w.a_deliveries
    ],
    ("GET", "/v1/decisions/{message_id}"): lambda w: [
        ("GET", f"/v1/decisions/{w.message_id}", None)
    ],
    ("GET", "/v1/duties/{duty_id}"): lambda w: [
        ("GET", f"/v1/duties/{d['id']}", None) for d in w.a_duties
    ],
    ("POST", "/v1/duties/{duty_id}/acknowledge"): lambda w: [
        ("POST", f"/v1/duties/{d['id']}/acknowledge", {}) for d in w.a_duties
    ],
    # B received the release notice, so it may read it: it probes the DIP breach instead
    ("GET", "/v1/messages/{message_id}"): lambda w: [
        ("GET", f"/v1/messages/{w.dip_message_id}", None)
    ],
    # updates are the sender's alone, though B holds the publish scopes and received it
    ("POST", "/v1/messages/{message_id}/amend"): lambda w: [
        ("POST", f"/v1/messages/{w.message_id}/amend", release_notice())
    ],
    ("POST", "/v1/messages/{message_id}/cancel"): lambda w: [
        ("POST", f"/v1/messages/{w.message_id}/cancel", {"reason": "other"})
    ],
    ("POST", "/v1/messages/{message_id}/confirm-release"): lambda w: [
        (
            "POST",
            f"/v1/messages/{w.message_id}/confirm-release",
            {"released_at": "2020-01-01T00:00:00Z"},
        )
    ],
    ("POST", "/v1/messages/{message_id}/outcome"): lambda w: [
        (
            "POST",
            f"/v1/messages/{w.dip_message_id}/outcome",
            {"outcome": "arrested", "date": "2020-01-01"},
        )
    ],
}
#: operator routes take a client id: an agency without ``admin`` gets 403 whatever the id
OPERATOR_ID_ROUTES = {
    ("POST", "/v1/admin/clients/{client_id}/disable"),
    ("POST", "/v1/admin/clients/{client_id}/enable"),
}
#: routes that list per-agency data (and the query parameters that could name A's objects)
LIST_ROUTES = {
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/encryption-keys"),
    ("GET", "/v1/deliveries"),
    ("GET", "/v1/dead-letters"),
    ("GET", "/v1/inbox"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/duties"),  # the caller's own, as recipient, sender or escalation party
    ("GET", "/v1/dip-breaches"),  # those the caller sent or received
    ("GET", "/v1/messages"),  # the caller's own originals
    ("GET", "/v1/deliveries/latency"),  # counts and durations of the caller's own
    ("GET", "/v1/reports/timeliness"),  # counts about the caller's own messages (ig: all)
}
#: IG officers' routes (scope ig:audit, which B does not hold): B gets 403 (test below)
IG_ONLY_ROUTES = {
    ("POST", "/v1/audit/subject-access"),
    ("GET", "/v1/audit/disclosures"),
    ("GET", "/v1/retention/due"),
}
#: routes whose body selects objects by id or position (each has a test below)
SELECTOR_ROUTES = {("POST", "/v1/dead-letters/replay"), ("POST", "/v1/inbox/ack")}
#: routes that create the caller's own objects, and operator routes
NOT_PER_AGENCY = {
    ("POST", "/v1/messages/release-notice"),
    ("POST", "/v1/messages/licence-recall"),
    ("POST", "/v1/messages/dip-breach"),
    ("POST", "/v1/subscriptions"),
    ("POST", "/v1/encryption-keys"),
    # the caller's own Kafka principal, named from its token's party: nothing to select
    ("POST", "/v1/kafka-credential"),
    ("GET", "/v1/admin/clients"),
    ("POST", "/v1/admin/clients"),
    ("GET", "/v1/admin/signing-keys"),
    ("POST", "/v1/admin/signing-keys/rotate"),
    ("GET", "/v1/admin/delivery-signing-keys"),
    ("POST", "/v1/admin/delivery-signing-keys/rotate"),
}


def _openapi_v1(runtime: Runtime) -> set[tuple[str, str]]:
    spec = create_app(runtime).openapi()
    return {(m.upper(), p) for p, ops in spec["paths"].items() if p.startswith("/v1/") for m in ops}


async def test_every_v1_route_is_classified_and_every_id_route_has_a_case(
    runtime: Runtime,
) -> None:
    documented = _openapi_v1(runtime)
    with_id = {(m, p) for m, p in documented if "{" in p}
    assert with_id == set(ID_ROUTES) | OPERATOR_ID_ROUTES, (
        f"id routes without a cross-agency case: {sorted(with_id - set(ID_ROUTES))}"
    )
    classified = set(ID_ROUTES) | OPERATOR_ID_ROUTES | LIST_ROUTES | SELECTOR_ROUTES
    classified |= NOT_PER_AGENCY | IG_ONLY_ROUTES
    assert documented == classified, (
        f"unclassified: {sorted(documented - classified)}; gone: {sorted(classified - documented)}"
    )


async def test_another_agencys_ids_answer_404_and_change_nothing(world: World) -> None:
    w = world
    before = await _snapshot(w)
    # control: the ids are real - A (or, for the decision, its sender) sees each of them
    for d in w.a_deliveries:
        assert (await w.http.get(f"/v1/deliveries/{d['id']}", headers=w.a)).status_code == 200
    for d in w.a_duties:
        assert (await w.http.get(f"/v1/duties/{d['id']}", headers=w.a)).status_code == 200
    r = await w.http.get(f"/v1/decisions/{w.message_id}", headers=w.sender)
    assert r.status_code == 200, r.text
    r = await w.http.get(f"/v1/messages/{w.dip_message_id}", headers=w.dip_sender)
    assert r.status_code == 200, r.text
    r = await w.http.get(f"/v1/messages/{w.message_id}", headers=w.b)  # B's own projection
    assert r.status_code == 200 and r.json()["role"] == "recipient", r.text
    messages_before = [
        (m["state"], m["version"])
        for m in (
            await w.runtime.store.get_message(w.message_id),
            await w.runtime.store.get_message(w.dip_message_id),
        )
        if m is not None
    ]

    failures = []
    not_found_details = set()
    for route, probe in ID_ROUTES.items():
        requests = probe(w)
        assert requests, route
        for method, url, body in requests:
            r = await w.http.request(method, url, json=body, headers=w.b)
            if r.status_code != 404 or problem_of(r)["code"] != "not_found":
                failures.append((route, url, r.status_code, r.text[:300]))
                continue
            detail = problem_of(r)["detail"]
            not_found_details.add(detail.replace(url.split("/")[3], "<id>"))
    assert not failures, failures
    assert await _snapshot(w) == before
    messages_after = [
        (m["state"], m["version"])
        for m in (
            await w.runtime.store.get_message(w.message_id),
            await w.runtime.store.get_message(w.dip_message_id),
        )
        if m is not None
    ]
    assert messages_after == messages_before == [("notified", 1), ("open", 1)]

    # B's 404 for A's id reads like its 404 for an id that does not exist at all
    for route, probe in ID_ROUTES.items():
        for method, url, body in probe(w)[:1]:
            real = await w.http.request(method, url, json=body, headers=w.b)
            fake_url = url.replace(url.split("/")[3], "0" * len(url.split("/")[3]))
            fake = await w.http.request(method, fake_url, json=body, headers=w.b)
            assert real.status_code == fake.status_code == 404, route
            strip = [url.split("/")[3], fake_url.split("/")[3]]
            texts = [real.json()["detail"], fake.json()["detail"]]
            for i, s in enumerate(strip):
                texts[i] = texts[i].replace(s, "<id>")
            assert texts[0] == texts[1], (route, texts)


async def test_an_ig_scope_is_not_what_makes_the_difference(world: World) -> None:
    """Control for the 404s on decisions: with ``ig:audit`` (which B does not hold) the same
    request is allowed, so B's 404 is the ownership check, not a broken route."""
    w = world
    ig, _ = await token_of(w.http, w.runtime, HOUSING, ["ig:audit"])
    r = await w.http.get(f"/v1/decisions/{w.message_id}", headers=bearer(ig))
    assert r.status_code == 200, r.text


async def test_a_subscription_path_without_a_get_route_leaks_nothing(world: World) -> None:
    w = world
    for s in w.a_subscriptions.values():
        r = await w.http.get(f"/v1/subscriptions/{s['id']}", headers=w.b)
        assert r.status_code in (404, 405), r.text
        assert s["id"] not in r.text.replace(f"/v1/subscriptions/{s['id']}", "")


async def test_lists_never_show_another_agencys_objects(world: World) -> None:
    w = world
    a_sub = w.a_subscriptions["webhook_v1"]["id"]
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "subscriptions": ("/v1/subscriptions", {}),
        "deliveries": ("/v1/deliveries", {"limit": 1000}),
        "deliveries of A's subscription": ("/v1/deliveries", {"subscription_id": a_sub}),
        "deliveries of the shared message": ("/v1/deliveries", {"message_id": w.message_id}),
        "dead letters": ("/v1/dead-letters", {}),
        "dead letters of A's subscription": ("/v1/dead-letters", {"subscription_id": a_sub}),
        "inbox from the start": ("/v1/inbox", {"after": 0, "limit": 500}),
        "audit": ("/v1/audit", {"limit": 1000}),
        "audit of the shared message": ("/v1/audit", {"message_id": w.message_id}),
        "duties": ("/v1/duties", {}),
        "duties of the shared message": ("/v1/duties", {"message_id": w.message_id}),
        "duties as sender": ("/v1/duties", {"role": "sender"}),
        "duties as escalation party": ("/v1/duties", {"role": "escalation"}),
        "dip breaches": ("/v1/dip-breaches", {}),
        "encryption keys": ("/v1/encryption-keys", {}),
    }
    seen: dict[str, Any] = {}
    for name, (url, params) in requests.items():
        r = await w.http.get(url, params=params, headers=w.b)
        assert r.status_code == 200, (name, r.text)
        seen[name] = r.json()
        leaked = sorted(i for i in w.a_ids if i in r.text)
        assert not leaked, (name, leaked)
        assert VAWG not in r.text, (name, r.text[:500])

    # B sees its own, so the lists are not empty for want of data
    b_delivery = w.b_deliveries[0]["id"]
    assert [d["id"] for d in seen["deliveries"]] == [b_delivery]
    assert [d["id"] for d in seen["deliveries of the shared message"]] == [b_delivery]
    assert seen["deliveries of A's subscription"] == seen["dead letters of A's subscription"] == []
    assert seen["dead letters"] == []
    assert [e["delivery_id"] for e in seen["inbox from the start"]["entries"]] == [b_delivery]
    entries = seen["audit"]["entries"]
    assert entries and all(HOUSING in (e["actor"], e["recipient"]) for e in entries)
    shared = seen["audit of the shared message"]["entries"]
    assert all(HOUSING in (e["actor"], e["recipient"]) for e in shared)
    # ... and A sees its own (control)
    r = await w.http.get("/v1/dead-letters", headers=w.a)
    assert {d["id"] for d in r.json()} == {d["id"] for d in w.a_dead_letters}
    r = await w.http.get("/v1/inbox", params={"after": 0}, headers=w.a)
    assert len(r.json()["entries"]) == 2  # the message and the notice


async def test_ig_only_routes_refuse_every_agency_scope(world: World) -> None:
    for method, path in sorted(IG_ONLY_ROUTES):
        body = {"crn": "X100009"} if method == "POST" else None
        r = await world.http.request(method, path, json=body, headers=world.b)
        assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope", r.text


async def test_replay_many_naming_another_agencys_subscription_does_nothing(
    world: World,
) -> None:
    w = world
    before = await _snapshot(w)
    for key in ("webhook_v1", "webhook_v1a", "disabled"):
        body = {"subscription_id": w.a_subscriptions[key]["id"]}
        r = await w.http.post("/v1/dead-letters/replay", json=body, headers=w.b)
        assert r.status_code == 404 and problem_of(r)["code"] == "not_found", r.text
    # a time range covering everything replays only B's own (none)
    everything = {
        "since": (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat(),
        "until": (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat(),
    }
    r = await w.http.post("/v1/dead-letters/replay", json=everything, headers=w.b)
    assert r.status_code == 202 and r.json() == {"replayed": []}, r.text
    assert await _snapshot(w) == before
    # control: A replaying the same selection queues its dead letters again
    body = {"subscription_id": w.a_subscriptions["webhook_v1"]["id"]}
    r = await w.http.post("/v1/dead-letters/replay", json=body, headers=w.a)
    assert r.status_code == 202 and len(r.json()["replayed"]) == 1, r.text


async def test_acknowledging_another_agencys_inbox_positions_moves_nothing_of_theirs(
    world: World,
) -> None:
    w = world
    a_client_cursors_before = await _snapshot(w)
    a_seqs = [e["seq"] for e in await w.runtime.store.inbox_after(VAWG, 0, 1000)]
    b_seqs = [e["seq"] for e in await w.runtime.store.inbox_after(HOUSING, 0, 1000)]
    beyond_b = [s for s in a_seqs if s > max(b_seqs)]
    for seq in beyond_b:
        r = await w.http.post("/v1/inbox/ack", json={"cursor": seq}, headers=w.b)
        assert r.status_code == 400, r.text  # beyond B's own newest entry
    # A's (fresh) reader still starts from the beginning of A's inbox
    r = await w.http.get("/v1/inbox", headers=w.a)
    assert [e["cursor"] for e in r.json()["entries"]] == a_seqs
    assert await _snapshot(w) == a_client_cursors_before


async def test_a_third_agency_with_its_own_decisions_scope_sees_no_other_decision(
    world: World,
) -> None:
    w = world
    involved = {d["recipient"] for d in await w.runtime.store.list_deliveries()} | {PRISON}
    assert POLICE_DIP not in involved
    dip, _ = await token_of(w.http, w.runtime, POLICE_DIP, AGENCY_SCOPES)
    r = await w.http.get(f"/v1/decisions/{w.message_id}", headers=bearer(dip))
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    r = await w.http.get("/v1/audit", params={"message_id": w.message_id}, headers=bearer(dip))
    assert r.status_code == 200 and r.json()["entries"] == []


async def test_another_agencys_idempotency_key_replays_nothing_of_theirs(world: World) -> None:
    """Idempotency keys are per client: reusing the prison's key gets B's own new message,
    never the prison's (its id, recipients or decision)."""
    w = world
    key = {"Idempotency-Key": "release-2026-0001"}
    first = await w.http.post(
        "/v1/messages/release-notice", json=release_notice(), headers={**w.sender, **key}
    )
    assert first.status_code == 202, first.text
    pdu, _ = await token_of(w.http, w.runtime, PDU, AGENCY_SCOPES)
    r = await w.http.post(
        "/v1/messages/licence-recall",
        json=example("licence-recall"),
        headers={**bearer(pdu), **key},
    )
    assert r.status_code == 202, r.text
    assert "idempotent-replayed" not in r.headers
    assert r.json()["id"] != first.json()["id"] and first.json()["id"] not in r.text
    assert r.json()["message_type"] == "licence-recall"
    # control: the prison's own retry with its key is a replay
    again = await w.http.post(
        "/v1/messages/release-notice", json=release_notice(), headers={**w.sender, **key}
    )
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
