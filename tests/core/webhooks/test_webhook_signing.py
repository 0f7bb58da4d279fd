"""Standard Webhooks signatures, cross-checked with the independent ``standardwebhooks``
package."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.core.crypto.keys import new_webhook_secret
from services.core.errors import AuthenticationFailed
from services.core.webhooks.signing import headers, sign, verify

BODY = b'{"specversion":"1.0","id":"msg_1","data":{"release":{"date":"2026-12-01"}}}'
MSG_ID = "msg_2f1c0b7e"


@pytest.fixture
def secret() -> str:
    return new_webhook_secret()


def _now() -> int:
    return int(time.time())


def test_secret_format(secret: str) -> None:
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_webhook_secret() != secret


def test_signature_is_hmac_sha256_of_id_timestamp_body(secret: str) -> None:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{MSG_ID}.1700000000.".encode() + BODY, hashlib.sha256).digest()
    assert sign(secret, MSG_ID, 1_700_000_000, BODY) == "v1," + base64.b64encode(mac).decode()


def test_prefix_is_optional(secret: str) -> None:
    bare = secret.removeprefix("whsec_")
    assert sign(bare, MSG_ID, 1, BODY) == sign(secret, MSG_ID, 1, BODY)


def test_sign_verify_round_trip(secret: str) -> None:
    ts = _now()
    verify(secret, MSG_ID, ts, BODY, sign(secret, MSG_ID, ts, BODY), now=ts)


def test_verify_rejects_wrong_secret(secret: str) -> None:
    ts = _now()
    header = sign(new_webhook_secret(), MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(secret, MSG_ID, ts, BODY, header, now=ts)


@pytest.mark.parametrize(
    ("msg_id", "ts_delta", "body"),
    [
        pytest.param(MSG_ID, 0, BODY.replace(b"2026-12-01", b"2026-12-02"), id="tampered-body"),
        pytest.param(MSG_ID, 0, BODY + b" ", id="appended-byte"),
        pytest.param("msg_other", 0, BODY, id="other-message-id"),
        pytest.param(MSG_ID, 1, BODY, id="other-timestamp"),
    ],
)
def test_verify_rejects_anything_tampered(
    secret: str, msg_id: str, ts_delta: int, body: bytes
) -> None:
    ts = _now()
    header = sign(secret, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="no webhook signature matched"):
        verify(secret, msg_id, ts + ts_delta, body, header, now=ts)


@pytest.mark.parametrize("skew", [301, -301, 3600, -86_400])
def test_verify_rejects_timestamps_outside_tolerance(secret: str, skew: int) -> None:
    now = _now()
    ts = now - skew
    header = sign(secret, MSG_ID, ts, BODY)
    with pytest.raises(AuthenticationFailed, match="timestamp outside tolerance"):
        verify(secret, MSG_ID, ts, BODY, header, now=now)


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_verify_accepts_the_tolerance_boundary(secret: str, skew: int) -> None:
    now = _now()
    ts = now - skew
    verify(secret, MSG_ID, ts, BODY, sign(secret, MSG_ID, ts, BODY), now=now)


def test_custom_tolerance(secret: str) -> None:
    now = _now()
    ts = now - 20
    header = sign(secret, MSG_ID, ts, BODY)
    verify(secret, MSG_ID, ts, BODY, header, now=now, tolerance=20)
    with pytest.raises(AuthenticationFailed):
        verify(secret, MSG_ID, ts, BODY, header, now=now, tolerance=19)


def test_verify_rejects_other_scheme_versions(secret: str) -> None:
    ts = _now()
    v1 = sign(secret, MSG_ID, ts, BODY)
    for header in (v1.replace("v1,", "v2,", 1), v1.removeprefix("v1,"), "", "v1,"):
        with pytest.raises(AuthenticationFailed):
            verify(secret, MSG_ID, ts, BODY, header, now=ts)


def test_headers_carry_one_signature_per_secret(secret: str) -> None:
    old, new = secret, new_webhook_secret()
    ts = _now()
    h = headers([old, new], MSG_ID, ts, BODY)
    assert h["webhook-id"] == MSG_ID
    assert h["webhook-timestamp"] == str(ts)
    assert h["webhook-signature"].split(" ") == [
        sign(old, MSG_ID, ts, BODY),
        sign(new, MSG_ID, ts, BODY),
    ]
    # During rotation the receiver may hold either secret.
    for s in (old, new):
        verify(s, MSG_ID, ts, BODY, h["webhook-signature"], now=ts)
    with pytest.raises(AuthenticationFailed):
        verify(new_webhook_secret(), MSG_ID, ts, BODY, h["webhook-signature"], now=ts)


# --- the independent implementation -----------------------------------------------------


def test_standardwebhooks_accepts_our_signature(secret: str) -> None:
    h = headers([secret], MSG_ID, _now(), BODY)
    assert Webhook(secret).verify(BODY, h) == {
        "specversion": "1.0",
        "id": "msg_1",
        "data": {"release": {"date": "2026-12-01"}},
    }


def test_standardwebhooks_accepts_each_secret_of_a_rotation(secret: str) -> None:
    old, new = secret, new_webhook_secret()
    h = headers([old, new], MSG_ID, _now(), BODY)
    assert " " in h["webhook-signature"]
    for s in (old, new):
        Webhook(s).verify(BODY, h, json_parse=False)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_webhook_secret()).verify(BODY, h)


def test_standardwebhooks_rejects_a_tampered_body(secret: str) -> None:
    h = headers([secret], MSG_ID, _now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"msg_1", b"msg_2"), h)


def test_standardwebhooks_rejects_an_old_timestamp(secret: str) -> None:
    h = headers([secret], MSG_ID, _now() - 600, BODY)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(secret).verify(BODY, h)


def test_we_accept_standardwebhooks_signatures(secret: str) -> None:
    ts = _now()
    theirs = Webhook(secret).sign(MSG_ID, dt.datetime.fromtimestamp(ts, tz=dt.UTC), BODY.decode())
    assert theirs == sign(secret, MSG_ID, ts, BODY)
    verify(secret, MSG_ID, ts, BODY, theirs, now=ts)
