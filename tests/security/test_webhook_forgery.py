"""Forged, replayed and tampered webhooks (Standard Webhooks, "Verifying webhook authenticity"):
a receiver verifying with :func:`services.core.webhooks.signing.verify` accepts a genuine
delivery - captured here from the broker's own dispatcher - and refuses it replayed after the
tolerance, re-signed with another key, or with its body, id or timestamp changed; v1a
(ed25519) signatures verify with the public key only. The demo receiver is then sent
unsigned and wrongly signed POSTs."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.core.errors import AuthenticationFailed
from services.core.runtime import Runtime
from services.core.webhooks import signing
from services.core.webhooks.signing import DEFAULT_TOLERANCE, SigningKeyInvalid, verify
from services.demo.receivers import Receivers
from tests.factories import release_notice
from tests.security.helpers import PRISON, VAWG, bearer, route_and_settle

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Captured:
    """One webhook as the receiver got it, and the key it verifies with."""

    key: str  # whsec_ secret (v1) or whpk_ public key (v1a)
    msg_id: str
    timestamp: int
    body: bytes
    signature: str

    def check(self, **over: Any) -> None:
        """``verify`` with the captured values, some replaced."""
        values: dict[str, Any] = {
            "key": self.key,
            "msg_id": self.msg_id,
            "timestamp": self.timestamp,
            "body": self.body,
            "signature_header": self.signature,
            "now": self.timestamp + 1,
        }
        values.update(over)
        verify(**values)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    r = Receivers()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def deliveries(
    http: httpx.AsyncClient, runtime: Runtime, token_for: Any, receivers: Receivers
) -> dict[str, Captured]:
    """A real release notice delivered by the dispatcher to a v1 and a v1a subscription."""
    vawg = bearer(await token_for(VAWG))
    keys = {}
    for scheme in ("v1", "v1a"):
        body = {
            "message_types": ["release-notice"],
            "webhook": {"url": receivers.url(f"vawg-{scheme}")},
            "signature_scheme": scheme,
        }
        r = await http.post("/v1/subscriptions", json=body, headers=vawg)
        assert r.status_code == 201, r.text
        keys[scheme] = r.json()["secret"] if scheme == "v1" else r.json()["public_key"]
        receivers.trust(f"vawg-{scheme}", keys[scheme])
    r = await http.post(
        "/v1/messages/release-notice",
        json=release_notice(),
        headers=bearer(await token_for(PRISON)),
    )
    assert r.status_code == 202, r.text
    await route_and_settle(runtime, r.json()["id"])
    captured = {}
    for scheme in ("v1", "v1a"):
        [got] = receivers.for_party(f"vawg-{scheme}")
        captured[scheme] = Captured(
            keys[scheme],
            got.headers["webhook-id"],
            int(got.headers["webhook-timestamp"]),
            got.body,
            got.headers["webhook-signature"],
        )
        assert captured[scheme].signature.startswith(f"{scheme},")
    return captured


def test_signatures_and_their_verifier_agree_with_the_reference_library() -> None:
    secret = signing.new_signing_key("v1")
    ts = int(time.time())
    header = signing.sign(secret, "msg_1", ts, b"{}")
    Webhook(secret).verify(
        b"{}", {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": header}
    )
    forged = signing.sign(signing.new_signing_key("v1"), "msg_1", ts, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            b"{}",
            {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": forged},
        )


async def test_a_genuine_delivery_verifies(deliveries: dict[str, Captured]) -> None:
    """Control: both captured deliveries verify, so each refusal below is for the forgery."""
    for captured in deliveries.values():
        captured.check()
    v1 = deliveries["v1"]
    Webhook(v1.key).verify(
        v1.body,
        {
            "webhook-id": v1.msg_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": signing.sign(v1.key, v1.msg_id, int(time.time()), v1.body),
        },
    )


@pytest.mark.parametrize("scheme", ["v1", "v1a"])
async def test_a_replayed_delivery_is_refused(deliveries: dict[str, Captured], scheme: str) -> None:
    captured = deliveries[scheme]
    captured.check(now=captured.timestamp + DEFAULT_TOLERANCE)  # control: at the edge
    for now in (
        captured.timestamp + DEFAULT_TOLERANCE + 1,
        captured.timestamp + 86_400,
        captured.timestamp - DEFAULT_TOLERANCE - 1,  # from the future
    ):
        with pytest.raises(AuthenticationFailed):
            captured.check(now=now)


@pytest.mark.parametrize("scheme", ["v1", "v1a"])
async def test_a_tampered_delivery_is_refused(deliveries: dict[str, Captured], scheme: str) -> None:
    captured = deliveries[scheme]
    event = json.loads(captured.body)
    event["data"]["injected"] = True
    tampered: dict[str, dict[str, Any]] = {
        "body changed": {"body": json.dumps(event).encode()},
        "body with a trailing space": {"body": captured.body + b" "},
        "body truncated": {"body": captured.body[:-1]},
        "id changed": {"msg_id": captured.msg_id + "0"},
        "id of another delivery": {"msg_id": "msg_" + "0" * 32},
        "timestamp moved": {"timestamp": captured.timestamp + 1, "now": captured.timestamp + 2},
        "timestamp moved into the id": {
            "msg_id": f"{captured.msg_id}.{str(captured.timestamp)[:5]}",
            "timestamp": int(str(captured.timestamp)[5:]),
            "now": int(str(captured.timestamp)[5:]),
        },
    }
    accepted = []
    for name, over in tampered.items():
        try:
            captured.check(**over)
        except AuthenticationFailed:
            continue
        accepted.append(name)
    assert not accepted


@pytest.mark.parametrize("scheme", ["v1", "v1a"])
async def test_malformed_signature_headers_are_refused(
    deliveries: dict[str, Captured], scheme: str
) -> None:
    captured = deliveries[scheme]
    version, _, encoded = captured.signature.partition(",")
    raw = base64.b64decode(encoded)
    other = "v1a" if version == "v1" else "v1"
    headers = [
        "",
        " ",
        f"{version},",
        version,
        encoded,
        f"{version},{encoded[:-4]}",
        f"{version},{base64.b64encode(raw[:-1]).decode()}",
        f"{version},{base64.b64encode(raw + b'x').decode()}",
        f"{version.upper()},{encoded}",
        f"v2,{encoded}",
        f"{other},{encoded}",
        f"{version} ,{encoded}",
        f"{version},{encoded}=",
        f"{version},{base64.urlsafe_b64encode(bytes(len(raw))).decode()}",
    ]
    for header in headers:
        with pytest.raises(AuthenticationFailed):
            captured.check(signature_header=header)


async def test_v1a_is_verified_with_the_public_key_only(deliveries: dict[str, Captured]) -> None:
    v1a = deliveries["v1a"]
    another = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(AuthenticationFailed):
        v1a.check(key="whpk_" + base64.b64encode(another).decode())
    # a whsk_ secret key is never a verifying key
    with pytest.raises(SigningKeyInvalid):
        v1a.check(key=signing.new_signing_key("v1a"))
    # a v1 secret does not verify a v1a signature, nor a v1a key a v1 signature
    with pytest.raises(AuthenticationFailed):
        v1a.check(key=deliveries["v1"].key)
    with pytest.raises(AuthenticationFailed):
        deliveries["v1"].check(key=v1a.key)


# -- the demo receiver ---------------------------------------------------------------------


async def test_the_demo_receiver_refuses_unsigned_and_wrongly_signed_posts(
    receivers: Receivers,
) -> None:
    """A receiver that keeps (and answers 2xx to) whatever reaches its URL lets anyone on the
    network inject events: a POST without a valid signature must be refused (4xx) and not
    recorded as received."""
    body = json.dumps({"specversion": "1.0", "id": "forged", "data": {"forged": True}}).encode()
    now = int(time.time())
    attempts = {
        "unsigned": {"content-type": "application/cloudevents+json"},
        "wrongly signed": {
            "content-type": "application/cloudevents+json",
            **signing.headers([signing.new_signing_key("v1")], "msg_forged", now, body),
        },
        "stale": {
            "content-type": "application/cloudevents+json",
            **signing.headers([signing.new_signing_key("v1")], "msg_forged", now - 3600, body),
        },
    }
    answers = {}
    async with httpx.AsyncClient() as client:
        for name, headers in attempts.items():
            r = await client.post(receivers.url(VAWG), content=body, headers=headers)
            answers[name] = r.status_code
    recorded = receivers.for_party(VAWG)
    assert all(400 <= s < 500 for s in answers.values()) and recorded == [], (
        f"demo receiver answered {answers} and recorded {len(recorded)} forged request(s)"
    )


async def test_the_demo_receiver_accepts_genuine_posts_once(receivers: Receivers) -> None:
    """Control for the refusals above, and de-duplication: a redelivery of the same
    ``webhook-id`` is acknowledged but not recorded again."""
    secret = signing.new_signing_key("v1")
    receivers.trust(VAWG, secret)
    body = json.dumps({"specversion": "1.0", "id": "m-1", "data": {}}).encode()
    headers = {
        "content-type": "application/cloudevents+json",
        **signing.headers([secret], "msg_genuine", int(time.time()), body),
    }
    async with httpx.AsyncClient() as client:
        first = await client.post(receivers.url(VAWG), content=body, headers=headers)
        again = await client.post(receivers.url(VAWG), content=body, headers=headers)
    assert (first.status_code, again.status_code) == (204, 204)
    assert len(receivers.for_party(VAWG)) == 1
