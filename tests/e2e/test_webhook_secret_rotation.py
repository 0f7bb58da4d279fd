"""End to end through real HTTP (uvicorn), the real broker and a real webhook receiver:
rotating a subscription's signing key, and asymmetric (v1a, ed25519) signatures.

During a rotation's overlap every delivery carries two signatures, one by the previous key
and one by the new, so a receiver holding either accepts it (Standard Webhooks, "Webhook
headers"); with no overlap only the new key signs."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.core.webhooks import signing
from services.demo.agency import AgencyClient
from services.demo.receivers import Received, Receivers
from services.system import System, ensure_demo_clients
from tests.factories import release_notice

pytestmark = pytest.mark.integration

PRISON = "hmp-northgate"
VAWG = "eastborough-vawg"


@pytest.fixture
async def clients(system: System) -> AsyncIterator[dict[str, AgencyClient]]:
    assert system.runtime is not None
    creds = await ensure_demo_clients(system.runtime)
    made = {
        p: AgencyClient(system.gateway_url, c["client_id"], c["client_secret"])
        for p, c in creds.items()
    }
    yield made
    for c in made.values():
        await c.aclose()


async def _subscribe(client: AgencyClient, url: str, scheme: str = "v1") -> dict[str, Any]:
    r = await client.request(
        "POST",
        "/v1/subscriptions",
        json={
            "message_types": ["release-notice"],
            "webhook": {"url": url},
            "signature_scheme": scheme,
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _rotate(client: AgencyClient, sub_id: str, **body: int) -> dict[str, Any]:
    r = await client.request("POST", f"/v1/subscriptions/{sub_id}/rotate-secret", json=body or None)
    assert r.status_code == 200, r.text
    rotated: dict[str, Any] = r.json()
    return rotated


async def _deliver_one(clients: dict[str, AgencyClient], receivers: Receivers) -> Received:
    r = await clients[PRISON].publish("release-notice", release_notice())
    assert r.status_code == 202, r.text
    assert await receivers.wait_for({VAWG}, timeout=30)
    [req] = receivers.for_party(VAWG)
    return req


def _signatures(req: Received) -> list[str]:
    return req.headers["webhook-signature"].split(" ")


def _alone(req: Received, signature: str) -> dict[str, str]:
    """The request's headers with only one of its signatures."""
    return {**req.headers, "webhook-signature": signature}


def _ed25519_verifies(public_key: str, req: Received, signature: str) -> bool:
    """Checked with ``cryptography`` directly, independently of our ``signing.verify``."""
    version, _, encoded = signature.partition(",")
    assert version == "v1a"
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    content = f"{req.headers['webhook-id']}.{req.headers['webhook-timestamp']}.".encode()
    try:
        key.verify(base64.b64decode(encoded), content + req.body)
    except InvalidSignature:
        return False
    return True


async def test_during_the_overlap_deliveries_carry_old_and_new_v1_signatures(
    clients: dict[str, AgencyClient], receivers: Receivers
) -> None:
    created = await _subscribe(clients[VAWG], receivers.url(VAWG))
    old = created["secret"]
    rotated = await _rotate(clients[VAWG], created["id"])
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_until"] is not None

    req = await _deliver_one(clients, receivers)

    sigs = _signatures(req)
    assert len(sigs) == 2 and all(s.startswith("v1,") for s in sigs)
    # each key verifies exactly one of the two signatures (independent implementation)
    for secret in (old, new):
        matching = []
        for s in sigs:
            try:
                Webhook(secret).verify(req.body, _alone(req, s), json_parse=False)
            except WebhookVerificationError:
                continue
            matching.append(s)
        assert len(matching) == 1, secret
    # a receiver still on the old secret, or already on the new one, accepts the delivery
    for secret in (old, new):
        Webhook(secret).verify(req.body, req.headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_signing_key("v1")).verify(req.body, req.headers)


async def test_with_no_overlap_only_the_new_secret_signs(
    clients: dict[str, AgencyClient], receivers: Receivers
) -> None:
    created = await _subscribe(clients[VAWG], receivers.url(VAWG))
    rotated = await _rotate(clients[VAWG], created["id"], overlap_seconds=0)
    assert rotated["previous_secret_until"] is None

    req = await _deliver_one(clients, receivers)

    assert len(_signatures(req)) == 1
    Webhook(rotated["secret"]).verify(req.body, req.headers, json_parse=False)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(created["secret"]).verify(req.body, req.headers, json_parse=False)


async def test_v1a_delivery_verifies_with_the_public_key(
    clients: dict[str, AgencyClient], receivers: Receivers
) -> None:
    created = await _subscribe(clients[VAWG], receivers.url(VAWG), scheme="v1a")
    assert created["secret"] is None
    public_key = created["public_key"]

    req = await _deliver_one(clients, receivers)

    [signature] = _signatures(req)
    assert signature.startswith("v1a,")
    assert _ed25519_verifies(public_key, req, signature)
    ts = int(req.headers["webhook-timestamp"])
    signing.verify(
        public_key, req.headers["webhook-id"], ts, req.body, req.headers["webhook-signature"], ts
    )
    other = signing.public_key(signing.new_signing_key("v1a"))
    assert not _ed25519_verifies(other, req, signature)


async def test_rotating_a_v1a_key_signs_with_both_public_keys_during_the_overlap(
    clients: dict[str, AgencyClient], receivers: Receivers
) -> None:
    created = await _subscribe(clients[VAWG], receivers.url(VAWG), scheme="v1a")
    rotated = await _rotate(clients[VAWG], created["id"], overlap_seconds=3600)
    old, new = created["public_key"], rotated["public_key"]
    assert old != new

    req = await _deliver_one(clients, receivers)

    sigs = _signatures(req)
    assert len(sigs) == 2
    for key in (old, new):
        assert sum(_ed25519_verifies(key, req, s) for s in sigs) == 1, key
