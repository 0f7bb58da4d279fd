"""``GET /v1/reports/timeliness``: a sender sees the report of its own messages, an IG
officer the whole partnership's; bad periods are refused."""

from __future__ import annotations

import httpx

from services.core.runtime import Runtime
from services.core.scopes import default_scopes
from tests.factories import example, release_notice
from tests.gateway.conftest import TokenFor, bearer, problem_of

PRISON = "hmp-northgate"
POLICE_DIP = "eastborough-police-dip"


async def _publish(http: httpx.AsyncClient, token: str, message_type: str, body: object) -> str:
    r = await http.post(f"/v1/messages/{message_type}", json=body, headers=bearer(token))
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_own_report_counts_own_messages_and_ig_sees_all(
    runtime: Runtime, http: httpx.AsyncClient, token_for: TokenFor
) -> None:
    prison = await token_for(PRISON)
    police = await token_for(POLICE_DIP)
    await _publish(http, prison, "release-notice", release_notice(days_ahead=1))
    await _publish(http, prison, "release-notice", release_notice(days_ahead=10))
    await _publish(http, police, "dip-breach", example("dip-breach"))

    r = await http.get("/v1/reports/timeliness", headers=bearer(prison))
    assert r.status_code == 200, r.text
    own = r.json()
    assert own["scope"] == "own"
    assert own["release_notices"]["sent"] == 2
    assert own["release_notices"]["short_notice"] == 1
    assert (
        own["release_notices"]["notice_days"]["min"]
        < 2
        <= own["release_notices"]["notice_days"]["max"]
    )
    assert own["dip_breaches"]["total"] == 0  # the police's breach is not the prison's

    r = await http.get("/v1/reports/timeliness", headers=bearer(police))
    assert r.json()["dip_breaches"] == {
        "total": 1,
        "closed_before_stl": 0,
        "expired": 0,
        "open": 1,
        "reminders_sent": 0,
    }
    assert r.json()["release_notices"]["sent"] == 0

    ig = await token_for(PRISON, ["ig:audit"])
    r = await http.get("/v1/reports/timeliness", headers=bearer(ig))
    assert r.status_code == 200, r.text
    everything = r.json()
    assert everything["scope"] == "all"
    assert everything["release_notices"]["sent"] == 2
    assert everything["dip_breaches"]["total"] == 1

    # a period that ends before the messages were accepted counts none of them
    r = await http.get(
        "/v1/reports/timeliness",
        params={"until": "2020-01-01T00:00:00Z"},
        headers=bearer(ig),
    )
    assert r.json()["release_notices"]["sent"] == 0


async def test_bad_periods_are_refused(http: httpx.AsyncClient, token_for: TokenFor) -> None:
    token = await token_for(PRISON)
    for params, status, words in (
        ({"since": "2026-12-01T00:00:00"}, 422, "since"),
        (
            {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
            400,
            "since must be before until",
        ),
    ):
        r = await http.get("/v1/reports/timeliness", params=params, headers=bearer(token))
        assert r.status_code == status, r.text
        assert words in problem_of(r)["detail"]
    r = await http.get(
        "/v1/reports/timeliness",
        params={"since": "2026-12-01T00:00:00Z", "until": "2026-12-02T00:00:00Z"},
        headers=bearer(token),
    )
    assert r.status_code == 200  # control


async def test_recipient_without_reports_scope_is_refused(
    http: httpx.AsyncClient, token_for: TokenFor, runtime: Runtime
) -> None:
    assert "reports:read" not in default_scopes(runtime.engine.policies, "eastborough-vawg")
    token = await token_for("eastborough-vawg")
    r = await http.get("/v1/reports/timeliness", headers=bearer(token))
    assert r.status_code == 403
    assert problem_of(r)["code"] == "insufficient_scope"
