"""The release-notice lifecycle and the DIP breach outcome over HTTP: amend, cancel,
confirm-release, outcome, and reading the state and history (``GET /v1/messages``)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.runtime import Runtime
from services.core.store import tables as t
from services.core.timeliness.lifecycle import own_version
from services.gateway.app import create_app
from tests.conftest import EXTERNAL_KAFKA, make_settings
from tests.factories import example, release_notice
from tests.gateway.conftest import TokenFor, bearer, problem_of
from tests.security.helpers import route_and_settle

PRISON = "hmp-northgate"
POLICE_IOM = "eastborough-police-iom"
POLICE_DIP = "eastborough-police-dip"
HOUSING = "eastborough-housing"
VAWG = "eastborough-vawg"
EVERYONE = {
    "eastborough-pdu",
    POLICE_IOM,
    HOUSING,
    "eastborough-recovery",
    VAWG,
    "eastborough-vlo",
}
NEW_ADDRESS = {"line1": "2 Amended Road", "town": "Eastborough", "postcode": "ZZ8 8ZZ"}


def lowered(notice: dict[str, Any]) -> dict[str, Any]:
    """The notice amended: risk lowered (so the police IOM flow's condition is false) and a
    new address."""
    body = copy.deepcopy(notice)
    body["risk"] = {"rosh_level": "low", "domestic_abuse": True}
    body["destination"]["address"] = NEW_ADDRESS
    body["release"]["date"] = str(
        dt.date.fromisoformat(notice["release"]["date"]) + dt.timedelta(1)
    )
    return body


async def publish(http: httpx.AsyncClient, token: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await http.post("/v1/messages/release-notice", json=body, headers=bearer(token))
    assert r.status_code == 202, r.text
    out: dict[str, Any] = r.json()
    return out


def notice(days_ahead: int = 5, early_by: int = 14) -> dict[str, Any]:
    """An ECSL release ``early_by`` days before its conditional release date."""
    body = release_notice(days_ahead=days_ahead)
    release_date = dt.date.fromisoformat(body["release"]["date"])
    body["release"]["conditional_release_date"] = str(release_date + dt.timedelta(early_by))
    return body


def today_outcome(outcome: str = "arrested") -> dict[str, str]:
    return {"outcome": outcome, "date": str(dt.date.today())}


async def subscribe_inbox(http: httpx.AsyncClient, token: str, message_type: str) -> None:
    r = await http.post(
        "/v1/subscriptions",
        json={"message_types": [message_type], "channel": "inbox"},
        headers=bearer(token),
    )
    assert r.status_code == 201, r.text


# -- intake sets the initial state and the notice period ---------------------------------------


async def test_an_original_starts_its_lifecycle_with_its_notice_period(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = await token_for(PRISON)
    short = await publish(http, prison, notice(days_ahead=1, early_by=14))
    assert (short["lifecycle"], short["version"], short["refers_to"]) == ("original", 1, None)
    tl = short["timeliness"]
    assert tl["short_notice"] is True and tl["short_notice_threshold_days"] == 2.0
    assert 0 < tl["notice_days"] <= 1
    assert tl["days_early"] == 14
    stored = await runtime.store.get_message(short["id"])
    assert stored is not None
    assert (stored["state"], stored["version"], stored["timeliness"]) == ("notified", 1, tl)
    # control: ten days' notice is not short
    ample = await publish(http, prison, notice(days_ahead=10))
    assert ample["timeliness"]["short_notice"] is False
    assert ample["timeliness"]["notice_days"] > 9

    police = bearer(await token_for(POLICE_DIP))
    r = await http.post("/v1/messages/dip-breach", json=example("dip-breach"), headers=police)
    assert r.status_code == 202, r.text
    assert r.json()["timeliness"] == {"stl_expiry": "2027-05-10"}
    assert (await runtime.store.get_message(r.json()["id"]) or {})["state"] == "open"
    closed = example("dip-breach")
    closed["breach"]["outcome"] = "arrested"
    r = await http.post("/v1/messages/dip-breach", json=closed, headers=police)
    assert (await runtime.store.get_message(r.json()["id"]) or {})["state"] == "closed"
    pdu = bearer(await token_for("eastborough-pdu"))
    r = await http.post("/v1/messages/licence-recall", json=example("licence-recall"), headers=pdu)
    assert r.status_code == 202, r.text
    stored = await runtime.store.get_message(r.json()["id"])
    assert stored is not None and stored["state"] is None and r.json()["timeliness"] is None


# -- amend, cancel, confirm ----------------------------------------------------------------------


async def test_amend_narrows_and_cancel_reaches_everyone_any_version_reached(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    r = await http.post("/v1/messages/release-notice", json=notice(), headers=prison)
    original = r.json()
    root = original["id"]
    assert {x["party"] for x in original["recipients"]} == EVERYONE

    r = await http.post(f"/v1/messages/{root}/amend", json=lowered(notice()), headers=prison)
    assert r.status_code == 202, r.text
    amended = r.json()
    assert (amended["lifecycle"], amended["version"], amended["refers_to"]) == ("amended", 2, root)
    assert amended["id"] != root
    assert {x["party"] for x in amended["recipients"]} == EVERYONE - {POLICE_IOM}
    stored_root = await runtime.store.get_message(root)
    assert stored_root is not None
    assert (stored_root["state"], stored_root["version"]) == ("amended", 2)
    stored = await runtime.store.get_message(amended["id"])
    assert stored is not None and stored["person"] == stored_root["person"]  # same Kafka key
    assert [o["message_id"] for o in await runtime.store.unpublished()] == [root, amended["id"]]

    r = await http.post(
        f"/v1/messages/{root}/cancel", json={"reason": "exemption_panel_refused"}, headers=prison
    )
    assert r.status_code == 202, r.text
    cancelled = r.json()
    assert (cancelled["lifecycle"], cancelled["version"]) == ("cancelled", 3)
    assert {x["party"] for x in cancelled["recipients"]} == EVERYONE  # police included again
    assert cancelled["timeliness"]["reason"] == "exemption_panel_refused"
    row = await runtime.store.get_message(cancelled["id"])
    assert row is not None
    assert row["decision"]["basis"][POLICE_IOM] == root
    assert row["decision"]["basis"][HOUSING] == amended["id"]
    assert row["payload"]["destination"]["address"] == NEW_ADDRESS  # the latest state
    stored_root = await runtime.store.get_message(root)
    assert stored_root is not None
    assert (stored_root["state"], stored_root["version"]) == ("cancelled", 3)

    # each update has its disclosure-log entry: ids and enumerations, no personal data
    events = {e["event"]: e for e in await runtime.store.audit_entries(amended["id"])}
    assert events["message_amended"]["detail"]["refers_to"] == root
    entries = await runtime.store.audit_entries(cancelled["id"])
    entry = next(e for e in entries if e["event"] == "message_cancelled")
    assert entry["detail"] == {
        "client_id": entry["detail"]["client_id"],
        "refers_to": root,
        "version": 3,
        "state": "cancelled",
        "reason": "exemption_panel_refused",
    }
    assert "Nowhere" not in json.dumps(entry, default=str)
    assert "Amended" not in json.dumps(entry, default=str)

    # a cancelled notice takes no further update
    for path, body in (
        ("cancel", {"reason": "other"}),
        ("amend", notice()),
        ("confirm-release", {"released_at": dt.datetime.now(dt.UTC).isoformat()}),
    ):
        r = await http.post(f"/v1/messages/{root}/{path}", json=body, headers=prison)
        assert r.status_code == 409 and problem_of(r)["code"] == "notice_cancelled", (path, r.text)
    stored_root = await runtime.store.get_message(root)
    assert stored_root is not None and stored_root["version"] == 3


async def test_an_update_id_names_its_chain(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    root = (await http.post("/v1/messages/release-notice", json=notice(), headers=prison)).json()
    r = await http.post(f"/v1/messages/{root['id']}/amend", json=notice(3), headers=prison)
    amendment = r.json()["id"]
    # an update addressed by the amendment's id refers to the root, never to the amendment
    r = await http.post(
        f"/v1/messages/{amendment}/cancel", json={"reason": "other"}, headers=prison
    )
    assert r.status_code == 202 and r.json()["refers_to"] == root["id"], r.text
    assert r.json()["version"] == 3


async def test_confirm_release_is_final(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    root = (await http.post("/v1/messages/release-notice", json=notice(), headers=prison)).json()
    url = f"/v1/messages/{root['id']}/confirm-release"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = await http.post(url, json={"released_at": future}, headers=prison)
    assert r.status_code == 422 and problem_of(r)["errors"][0]["pointer"] == "/released_at"
    r = await http.post(url, json={"released_at": "2026-01-01T10:00:00"}, headers=prison)
    assert r.status_code == 422, r.text  # no time zone
    released_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    r = await http.post(url, json={"released_at": released_at.isoformat()}, headers=prison)
    assert r.status_code == 202, r.text
    assert r.json()["lifecycle"] == "released"
    assert dt.datetime.fromisoformat(r.json()["timeliness"]["released_at"]) == released_at
    stored = await runtime.store.get_message(root["id"])
    assert stored is not None and stored["state"] == "released"
    r = await http.post(
        f"/v1/messages/{root['id']}/cancel", json={"reason": "other"}, headers=prison
    )
    assert r.status_code == 409 and problem_of(r)["code"] == "notice_released"


async def test_outcome_closes_an_open_breach_once(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    police = bearer(await token_for(POLICE_DIP))
    r = await http.post("/v1/messages/dip-breach", json=example("dip-breach"), headers=police)
    root = r.json()["id"]
    url = f"/v1/messages/{root}/outcome"
    r = await http.post(url, json=today_outcome("went_away"), headers=police)
    assert r.status_code == 422, r.text
    tomorrow = {**today_outcome(), "date": str(dt.date.today() + dt.timedelta(days=1))}
    r = await http.post(url, json=tomorrow, headers=police)
    assert r.status_code == 422 and problem_of(r)["errors"][0]["pointer"] == "/date"
    r = await http.post(url, json=today_outcome("postal_charge_requisition"), headers=police)
    assert r.status_code == 202, r.text
    update = await runtime.store.get_message(r.json()["id"])
    assert update is not None
    assert update["payload"]["breach"]["outcome"] == "postal_charge_requisition"
    assert update["timeliness"]["outcome_date"] == str(dt.date.today())
    assert update["timeliness"]["within_stl"] is True
    stored = await runtime.store.get_message(root)
    assert stored is not None and (stored["state"], stored["version"]) == ("closed", 2)
    r = await http.post(url, json=today_outcome(), headers=police)
    assert r.status_code == 409 and problem_of(r)["code"] == "breach_closed"

    # a breach the scheduler marked expired
    r = await http.post("/v1/messages/dip-breach", json=example("dip-breach", 1), headers=police)
    expired = r.json()["id"]
    async with runtime.store.engine.begin() as c:
        m = t.messages
        await c.execute(m.update().where(m.c.id == expired).values(state="expired"))
    r = await http.post(f"/v1/messages/{expired}/outcome", json=today_outcome(), headers=police)
    assert r.status_code == 409 and problem_of(r)["code"] == "breach_expired"


async def test_refusals_each_with_its_control(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    r = await http.post("/v1/messages/release-notice", json=notice(), headers=prison)
    root = r.json()["id"]
    police = bearer(await token_for(POLICE_DIP))
    r = await http.post("/v1/messages/dip-breach", json=example("dip-breach"), headers=police)
    breach = r.json()["id"]
    # another agency holding the very scopes: 404, worded as for an id that does not exist
    scopes = ["publish:release-notice", "publish:dip-breach", "messages:read"]
    other = bearer(await token_for(HOUSING, scopes))
    cases = [
        ("amend", notice()),
        ("cancel", {"reason": "recalled"}),
        ("confirm-release", {"released_at": dt.datetime.now(dt.UTC).isoformat()}),
    ]
    missing_id = "0" * 36
    for path, body in [*cases, ("outcome", today_outcome())]:
        theirs_id = breach if path == "outcome" else root
        owner = police if path == "outcome" else prison
        theirs = await http.post(f"/v1/messages/{theirs_id}/{path}", json=body, headers=other)
        missing = await http.post(f"/v1/messages/{missing_id}/{path}", json=body, headers=owner)
        assert theirs.status_code == missing.status_code == 404, (path, theirs.text)
        assert problem_of(theirs)["code"] == problem_of(missing)["code"] == "not_found"
        assert problem_of(theirs)["detail"].replace(theirs_id, "<id>") == problem_of(missing)[
            "detail"
        ].replace(missing_id, "<id>")
    # the wrong message type: 409 naming it (a sender holding both publish scopes)
    both = bearer(await token_for(PRISON, scopes))
    r = await http.post(f"/v1/messages/{root}/outcome", json=today_outcome(), headers=both)
    assert r.status_code == 409 and problem_of(r)["code"] == "not_a_dip_breach", r.text
    police_both = bearer(await token_for(POLICE_DIP, scopes))
    r = await http.post(
        f"/v1/messages/{breach}/cancel", json={"reason": "other"}, headers=police_both
    )
    assert r.status_code == 409 and problem_of(r)["code"] == "not_a_release_notice", r.text
    # bad bodies: 422, nothing stored
    someone_else = notice()
    someone_else["person"]["pnc_id"] = "19/999999Z"
    for path, body, pointer in (
        ("cancel", {"reason": "he was seen in town"}, None),  # no free text
        ("cancel", {"reason": "recalled", "note": "x"}, None),
        ("amend", {**notice(), "release": {"date": "soon"}}, None),
        ("amend", someone_else, "/person/pnc_id"),
        ("confirm-release", {}, None),
    ):
        r = await http.post(f"/v1/messages/{root}/{path}", json=body, headers=prison)
        assert r.status_code == 422, (path, r.text)
        if pointer:
            assert problem_of(r)["errors"][0]["pointer"] == pointer
    # scope: a token without publish:release-notice (or publish:dip-breach)
    reader = bearer(await token_for(PRISON, ["messages:read"]))
    for path, body in cases:
        r = await http.post(f"/v1/messages/{root}/{path}", json=body, headers=reader)
        assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"
    dip_reader = bearer(await token_for(POLICE_DIP, ["messages:read"]))
    r = await http.post(f"/v1/messages/{breach}/outcome", json=today_outcome(), headers=dip_reader)
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"
    stored = await runtime.store.get_message(root)
    assert stored is not None and (stored["state"], stored["version"]) == ("notified", 1)
    assert len(await runtime.store.lifecycle_chain(root)) == 1
    # controls: the senders' own valid requests are accepted
    r = await http.post(f"/v1/messages/{root}/amend", json=notice(), headers=prison)
    assert r.status_code == 202, r.text
    r = await http.post(f"/v1/messages/{root}/confirm-release", json=cases[2][1], headers=prison)
    assert r.status_code == 202, r.text
    r = await http.post(f"/v1/messages/{breach}/outcome", json=today_outcome(), headers=police)
    assert r.status_code == 202, r.text


async def test_idempotency_key_on_updates(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    root = (await http.post("/v1/messages/release-notice", json=notice(), headers=prison)).json()
    url = f"/v1/messages/{root['id']}/cancel"
    key = {**prison, "Idempotency-Key": "cancel-0001"}
    first = await http.post(url, json={"reason": "recalled"}, headers=key)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    # the same request again (the notice is cancelled by now): the original answer
    again = await http.post(url, json={"reason": "recalled"}, headers=key)
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = await http.post(url, json={"reason": "other"}, headers=key)
    assert other.status_code == 409 and problem_of(other)["code"] == "idempotency_key_reused"
    # control: without the key, the cancelled notice refuses a second cancellation
    r = await http.post(url, json={"reason": "recalled"}, headers=prison)
    assert r.status_code == 409 and problem_of(r)["code"] == "notice_cancelled"
    assert len(await runtime.store.lifecycle_chain(root["id"])) == 2


# -- concurrent updates, on both stores ----------------------------------------------------------


@pytest.fixture
async def any_store_http(
    tmp_path: Path, kafka_bootstrap: str, database_url: str
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    settings = make_settings(tmp_path, database_url=database_url)
    rt = await Runtime.create(settings, kafka_bootstrap, embedded=not EXTERNAL_KAFKA)
    transport = httpx.ASGITransport(app=create_app(rt))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as c:
            yield rt, c
    finally:
        await rt.aclose()


async def test_two_concurrent_cancellations_one_wins(
    any_store_http: tuple[Runtime, httpx.AsyncClient],
) -> None:
    from services.core.clients import create_client

    rt, http = any_store_http
    creds = await create_client(rt, PRISON)
    r = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    prison = bearer(r.json()["access_token"])
    for _ in range(3):
        root = await http.post("/v1/messages/release-notice", json=notice(), headers=prison)
        root_id = root.json()["id"]
        url = f"/v1/messages/{root_id}/cancel"
        answers = await asyncio.gather(
            *(
                http.post(url, json={"reason": reason}, headers=prison)
                for reason in ("recalled", "other")
            )
        )
        assert sorted(a.status_code for a in answers) == [202, 409], [a.text for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert problem_of(loser)["code"] == "notice_cancelled"
        chain = await rt.store.lifecycle_chain(root_id)
        assert [(v["lifecycle"], own_version(v)) for v in chain] == [(None, 1), ("cancelled", 2)]
        stored = await rt.store.get_message(root_id)
        assert stored is not None and (stored["state"], stored["version"]) == ("cancelled", 2)
    # and an amendment racing a cancellation: both in order, or the amendment refused
    root_id = (
        await http.post("/v1/messages/release-notice", json=notice(), headers=prison)
    ).json()["id"]
    amend, cancel = await asyncio.gather(
        http.post(f"/v1/messages/{root_id}/amend", json=notice(4), headers=prison),
        http.post(f"/v1/messages/{root_id}/cancel", json={"reason": "other"}, headers=prison),
    )
    assert cancel.status_code == 202, cancel.text
    assert amend.status_code in (202, 409), amend.text
    chain = await rt.store.lifecycle_chain(root_id)
    assert [own_version(v) for v in chain] == list(range(1, len(chain) + 1))
    assert chain[-1]["lifecycle"] == "cancelled"
    if amend.status_code == 202:  # the cancellation came after it, and its basis says so
        assert set(chain[-1]["decision"]["basis"].values()) <= {root_id, amend.json()["id"]}
    short = await rt.store.list_root_messages(PRISON, short_notice=False)
    assert root_id in {m["id"] for m in short}


# -- reading the state and history ---------------------------------------------------------------


async def test_get_message_shows_each_caller_its_own(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    tokens = {p: await token_for(p) for p in (PRISON, POLICE_IOM, HOUSING, VAWG, POLICE_DIP)}
    for party in (POLICE_IOM, HOUSING):
        await subscribe_inbox(http, tokens[party], "release-notice")
    prison = bearer(tokens[PRISON])
    first = notice()
    root = (await http.post("/v1/messages/release-notice", json=first, headers=prison)).json()["id"]
    await route_and_settle(runtime, root)
    r = await http.post(f"/v1/messages/{root}/amend", json=lowered(first), headers=prison)
    amended = r.json()["id"]
    await route_and_settle(runtime, amended)
    r = await http.post(f"/v1/messages/{root}/cancel", json={"reason": "recalled"}, headers=prison)
    cancelled = r.json()["id"]
    await route_and_settle(runtime, cancelled)

    # the sender: every version in full
    r = await http.get(f"/v1/messages/{root}", headers=prison)
    assert r.status_code == 200, r.text
    view = r.json()
    assert (view["role"], view["state"], view["version"]) == ("sender", "cancelled", 3)
    assert [(h["lifecycle"], h["version"]) for h in view["history"]] == [
        ("original", 1),
        ("amended", 2),
        ("cancelled", 3),
    ]
    assert view["history"][1]["payload"]["destination"]["address"] == NEW_ADDRESS
    assert view["history"][0]["payload"]["resettlement_needs"]["mental_health"] is True
    assert view["history"][2]["timeliness"]["reason"] == "recalled"
    assert view["timeliness"] == view["history"][0]["timeliness"]
    # by any version's id
    r = await http.get(f"/v1/messages/{cancelled}", headers=prison)
    assert r.json()["id"] == root and r.json()["history"] == view["history"]

    # police IOM: the original and the cancellation, each from the original (its basis)
    r = await http.get(f"/v1/messages/{root}", headers=bearer(tokens[POLICE_IOM]))
    assert r.status_code == 200, r.text
    police = r.json()
    assert police["role"] == "recipient" and police["state"] == "cancelled"
    assert [h["id"] for h in police["history"]] == [root, cancelled]
    shown = [h["payload"] for h in police["history"]]
    assert shown[0] == shown[1]
    assert shown[0]["destination"]["address"] == first["destination"]["address"]
    assert "Amended" not in r.text and "resettlement_needs" not in shown[0]
    assert (
        police["history"][1]["timeliness"]["notice_days"]
        == police["history"][0]["timeliness"]["notice_days"]
    )
    assert police["history"][1]["timeliness"]["reason"] == "recalled"

    # housing: all three, each its own projection of that version
    r = await http.get(f"/v1/messages/{amended}", headers=bearer(tokens[HOUSING]))
    housing = r.json()
    assert [h["id"] for h in housing["history"]] == [root, amended, cancelled]
    dates = [h["payload"]["release"]["date"] for h in housing["history"]]
    assert dates == [first["release"]["date"], *[lowered(first)["release"]["date"]] * 2]
    assert "mental_health" not in json.dumps(housing["history"])
    assert "address" not in json.dumps(housing["history"])  # housing is never given it
    assert police["history"][1]["payload"]["release"]["date"] == first["release"]["date"]

    # VAWG was entitled but has no subscription (its deliveries: "no_channel"): it may still
    # read its own projection here - never the address the agreements withhold from it
    r = await http.get(f"/v1/messages/{root}", headers=bearer(tokens[VAWG]))
    assert r.status_code == 200 and len(r.json()["history"]) == 3, r.text
    assert "address" not in json.dumps(r.json()["history"])
    # a party no version was for: 404, as for a missing id
    r = await http.get(f"/v1/messages/{root}", headers=bearer(tokens[POLICE_DIP]))
    assert r.status_code == 404 and problem_of(r)["code"] == "not_found"
    r = await http.get(f"/v1/messages/{'0' * 36}", headers=prison)
    assert r.status_code == 404
    # each read is in the disclosure log, ids only
    reads = [e for e in await runtime.store.audit_entries(root) if e["event"] == "message_read"]
    assert {e["actor"] for e in reads} == {PRISON, POLICE_IOM, HOUSING, VAWG}
    r = await http.get(
        f"/v1/messages/{root}", headers=bearer(await token_for(PRISON, ["inbox:read"]))
    )
    assert r.status_code == 403 and problem_of(r)["code"] == "insufficient_scope"


async def test_recipients_see_lifecycle_and_notice_period_in_the_delivered_event(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    police = await token_for(POLICE_IOM)
    await subscribe_inbox(http, police, "release-notice")
    prison = bearer(await token_for(PRISON))
    root = (
        await http.post("/v1/messages/release-notice", json=notice(1, 20), headers=prison)
    ).json()
    await route_and_settle(runtime, root["id"])
    r = await http.post(
        f"/v1/messages/{root['id']}/cancel", json={"reason": "recalled"}, headers=prison
    )
    await route_and_settle(runtime, r.json()["id"])
    r = await http.get("/v1/inbox", params={"after": 0}, headers=bearer(police))
    bodies = [e["event"] for e in r.json()["entries"] if e["kind"] == "message"]
    assert len(bodies) == 2, r.text
    first, second = bodies
    assert first["isalifecycle"] == "original" and first["isaversion"] == 1
    assert first["isashortnotice"] == "true" and first["isadaysearly"] == 20
    assert float(first["isanoticedays"]) == root["timeliness"]["notice_days"]
    assert "isarefersto" not in first
    assert second["isalifecycle"] == "cancelled" and second["isarefersto"] == root["id"]
    assert second["isaversion"] == 2 and second["isacancelreason"] == "recalled"


async def test_the_senders_dashboard_lists_its_own_messages(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    prison = bearer(await token_for(PRISON))
    ids = []
    for days in (1, 10, 0, 20):
        r = await http.post("/v1/messages/release-notice", json=notice(days), headers=prison)
        ids.append(r.json()["id"])
    await http.post(f"/v1/messages/{ids[1]}/cancel", json={"reason": "other"}, headers=prison)
    police = bearer(await token_for(POLICE_DIP))
    await http.post("/v1/messages/dip-breach", json=example("dip-breach"), headers=police)

    r = await http.get("/v1/messages", headers=prison)
    assert r.status_code == 200, r.text
    items = r.json()
    assert [i["id"] for i in items] == ids  # originals only, oldest first; not the police's
    assert items[1]["state"] == "cancelled" and items[1]["version"] == 2
    assert "payload" not in items[0]
    r = await http.get("/v1/messages", params={"short_notice": "true"}, headers=prison)
    assert [i["id"] for i in r.json()] == [ids[0], ids[2]]
    r = await http.get("/v1/messages", params={"short_notice": "false"}, headers=prison)
    assert [i["id"] for i in r.json()] == [ids[1], ids[3]]
    r = await http.get("/v1/messages", params={"state": "cancelled"}, headers=prison)
    assert [i["id"] for i in r.json()] == [ids[1]]
    r = await http.get("/v1/messages", params={"message_type": "dip-breach"}, headers=prison)
    assert r.json() == []
    page1 = (await http.get("/v1/messages", params={"limit": 3}, headers=prison)).json()
    page2 = (
        await http.get(
            "/v1/messages", params={"limit": 3, "after": page1[-1]["id"]}, headers=prison
        )
    ).json()
    assert [i["id"] for i in page1 + page2] == ids
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    r = await http.get("/v1/messages", params={"since": future}, headers=prison)
    assert r.json() == []
    r = await http.get("/v1/messages", params={"until": future}, headers=prison)
    assert len(r.json()) == 4
    r = await http.get("/v1/messages", params={"state": "bogus"}, headers=prison)
    assert r.status_code == 422
    r = await http.get("/v1/messages", headers=police)
    assert [i["message_type"] for i in r.json()] == ["dip-breach"]
    assert [i["state"] for i in r.json()] == ["open"]


async def test_a_party_entitled_only_from_an_amendment_is_not_shown_the_original(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    """The police IOM team hears of a release only once an amendment raises the risk: its
    view starts at the amendment, and its notice period is the amendment's, not the
    original's (which would tell it the original release date)."""
    police = await token_for(POLICE_IOM)
    await subscribe_inbox(http, police, "release-notice")
    prison = bearer(await token_for(PRISON))
    low = lowered(notice(days_ahead=9))
    root = (await http.post("/v1/messages/release-notice", json=low, headers=prison)).json()["id"]
    await route_and_settle(runtime, root)
    raised = notice(days_ahead=3)
    raised["destination"]["address"] = NEW_ADDRESS
    r = await http.post(f"/v1/messages/{root}/amend", json=raised, headers=prison)
    assert r.status_code == 202, r.text
    amended = r.json()
    assert POLICE_IOM in {x["party"] for x in amended["recipients"]}
    await route_and_settle(runtime, amended["id"])

    r = await http.get(f"/v1/messages/{root}", headers=bearer(police))
    assert r.status_code == 200, r.text
    view = r.json()
    assert [h["id"] for h in view["history"]] == [amended["id"]]
    assert view["timeliness"] == amended["timeliness"]
    assert view["accepted_at"] == view["history"][0]["accepted_at"]
    original = (await http.get(f"/v1/messages/{root}", headers=prison)).json()
    assert original["timeliness"]["notice_days"] != view["timeliness"]["notice_days"]
    assert low["release"]["date"] not in r.text
