"""The intake use-cases (services.core.intake) called as the core offers them, without HTTP:
what they store, what they answer, when they wake the relay, and the core errors they raise
(the gateway suites cover the same rules through the routes)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from services.core import intake
from services.core.errors import (
    IdempotencyKeyReused,
    NotFound,
    NoticeCancelled,
    SharingRefused,
    ValidationFailed,
)
from services.core.timeliness.lifecycle import CancelReason
from tests.factories import release_notice
from tests.integration.conftest import T0, MakeRuntime

PRISON = "hmp-northgate"


async def test_accept_stores_wakes_once_and_replays_under_its_key(
    make_runtime: MakeRuntime,
) -> None:
    rt = await make_runtime()
    woken: list[None] = []
    body = json.dumps(release_notice()).encode()

    async def send(payload: bytes) -> intake.Accepted:
        return await intake.accept(
            rt,
            PRISON,
            "release-notice",
            payload,
            client_id="c1",
            idempotency_key="k1",
            wake=lambda: woken.append(None),
        )

    first = await send(body)
    assert (first.lifecycle, first.version, first.refers_to) == ("original", 1, None)
    assert not first.replayed and first.decision.recipients and len(woken) == 1
    stored = await rt.store.get_message(first.id)
    assert stored is not None and stored["state"] == "notified"
    assert [m["id"] for m in await rt.store.unpublished()] == [first.id]

    again = await send(body)
    assert again.replayed and again.id == first.id and len(woken) == 1
    with pytest.raises(IdempotencyKeyReused):
        await send(json.dumps(release_notice(days_ahead=5)).encode())


async def test_refusal_is_audited_and_raised(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    with pytest.raises(SharingRefused):
        await intake.accept(
            rt,
            "no-such-party",
            "release-notice",
            json.dumps(release_notice()).encode(),
            client_id="c",
        )
    assert await rt.store.unpublished() == []


async def test_cancel_and_confirm_follow_the_lifecycle_rules(make_runtime: MakeRuntime) -> None:
    rt = await make_runtime()
    root = await intake.accept(
        rt, PRISON, "release-notice", json.dumps(release_notice()).encode(), client_id="c1"
    )
    with pytest.raises(ValidationFailed):
        await intake.confirm_release(
            rt, PRISON, root.id, T0 + dt.timedelta(hours=1), client_id="c1"
        )
    with pytest.raises(NotFound):  # another agency's message: as one that does not exist
        await intake.cancel(rt, "eastborough-vawg", root.id, CancelReason.other, client_id="c2")

    cancelled = await intake.cancel(rt, PRISON, root.id, CancelReason.recalled, client_id="c1")
    assert (cancelled.lifecycle, cancelled.version, cancelled.refers_to) == (
        "cancelled",
        2,
        root.id,
    )
    assert cancelled.timeliness is not None and cancelled.timeliness["reason"] == "recalled"
    with pytest.raises(NoticeCancelled):
        await intake.confirm_release(rt, PRISON, cancelled.id, T0, client_id="c1")
